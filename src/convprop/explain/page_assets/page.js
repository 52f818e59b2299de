/* convprop explain model: the page's script (inlined into every page; no network access).
 * It reads the trace from #trace-data, draws the layers and their maps, explains a hovered
 * cell with the real numbers, and runs the sandbox of the notes' shape arithmetic. */
"use strict";

const trace = JSON.parse(document.getElementById("trace-data").textContent);

// ---------------------------------------------------------------------------- arrays
function decode(packed) {
  if (!packed) return null;
  const bytes = Uint8Array.from(atob(packed.data), (c) => c.charCodeAt(0));
  return { shape: packed.shape, values: new Float32Array(bytes.buffer) };
}

// A map of the array as [channels][rows][cols]: (C, H, W) as is, (C, L) as rows of one,
// (F,) as one channel of one row.
function planes(array) {
  const s = array.shape;
  if (s.length === 3) return { channels: s[0], rows: s[1], cols: s[2] };
  if (s.length === 2) return { channels: s[0], rows: 1, cols: s[1] };
  if (s.length === 1) return { channels: 1, rows: 1, cols: s[0] };
  return { channels: 1, rows: 1, cols: 1 };
}

function at(array, c, i, j) {
  const p = planes(array);
  return array.values[(c * p.rows + i) * p.cols + j];
}

function number(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e-3 && a < 1e4 ? v.toFixed(4) : v.toExponential(3);
}

// ---------------------------------------------------------------------------- colours
function diverging(t) { // t in [-1, 1]: blue, white, red
  const u = Math.max(-1, Math.min(1, t));
  if (u < 0) return [Math.round(255 * (1 + u) + 33 * -u), Math.round(255 * (1 + u) + 102 * -u), Math.round(255 * (1 + u) + 172 * -u)];
  return [Math.round(255 * (1 - u) + 178 * u), Math.round(255 * (1 - u) + 24 * u), Math.round(255 * (1 - u) + 43 * u)];
}

function sequential(t) { // t in [0, 1]: dark to light
  const u = Math.max(0, Math.min(1, t));
  return [Math.round(20 + 230 * u), Math.round(24 + 200 * u ** 0.9), Math.round(60 + 140 * (1 - (1 - u) ** 2))];
}

function scaleOf(array, gradient) {
  let low = Infinity, high = -Infinity, peak = 0;
  for (const v of array.values) { low = Math.min(low, v); high = Math.max(high, v); peak = Math.max(peak, Math.abs(v)); }
  return gradient ? { gradient, low: -peak || -1, high: peak || 1 } : { gradient, low, high: high > low ? high : low + 1 };
}

function colour(scale, v) {
  if (scale.gradient) return diverging(v / scale.high);
  return sequential((v - scale.low) / (scale.high - scale.low));
}

// ---------------------------------------------------------------------------- drawing
function cellSize(p) {
  return Math.max(2, Math.min(12, Math.floor(150 / Math.max(p.rows, p.cols))));
}

function drawPlane(canvas, array, c, scale, highlight) {
  const p = planes(array), size = cellSize(p);
  canvas.width = p.cols * size; canvas.height = p.rows * size;
  const g = canvas.getContext("2d");
  for (let i = 0; i < p.rows; i++) {
    for (let j = 0; j < p.cols; j++) {
      const [r, gr, b] = colour(scale, at(array, c, i, j));
      g.fillStyle = `rgb(${r},${gr},${b})`;
      g.fillRect(j * size, i * size, size, size);
    }
  }
  if (highlight) {
    g.strokeStyle = "#ffb000"; g.lineWidth = 2;
    for (const [i, j] of highlight) g.strokeRect(j * size + 1, i * size + 1, size - 2, size - 2);
  }
  canvas.dataset.cell = size;
}

function legend(scale) {
  const box = document.createElement("div");
  box.className = "legend";
  const bar = document.createElement("canvas");
  bar.width = 100; bar.height = 8;
  const g = bar.getContext("2d");
  for (let x = 0; x < 100; x++) {
    const v = scale.low + (scale.high - scale.low) * x / 99;
    const [r, gr, b] = colour(scale, v);
    g.fillStyle = `rgb(${r},${gr},${b})`; g.fillRect(x, 0, 1, 8);
  }
  box.append(number(scale.low), bar, number(scale.high), scale.gradient ? " (0 white)" : "");
  return box;
}

// A group of canvases, one per channel, with its legend; returns {element, canvases, array, scale}.
function mapGroup(title, packed, gradient, role) {
  const array = decode(packed);
  const group = document.createElement("div");
  group.className = "group " + (gradient ? "backward-only" : "forward-only");
  group.dataset.map = role;
  const heading = document.createElement("h3");
  group.append(heading);
  if (!array) { heading.textContent = title + ": none"; return { element: group, canvases: [] }; }
  const p = planes(array), scale = scaleOf(array, gradient);
  heading.textContent = `${title} (${array.shape.join("x")}${p.channels > 8 ? ", first 8 channels shown" : ""})`;
  const row = document.createElement("div");
  row.className = "channels";
  const canvases = [];
  for (let c = 0; c < Math.min(p.channels, 8); c++) {
    const canvas = document.createElement("canvas");
    canvas.dataset.channel = c;
    canvas.title = `channel ${c}`;
    drawPlane(canvas, array, c, scale, null);
    row.append(canvas); canvases.push(canvas);
  }
  group.append(row, legend(scale));
  return { element: group, canvases, array, scale };
}

function cellUnder(canvas, event) {
  const size = Number(canvas.dataset.cell), rect = canvas.getBoundingClientRect();
  const j = Math.floor((event.clientX - rect.left) / size), i = Math.floor((event.clientY - rect.top) / size);
  return [i, j];
}

// ---------------------------------------------------------------------------- convolution
function convGeometry(layer) {
  const cfg = layer.config, spatial = layer.input_shape.length - 1;
  const pick = (v, d) => Array.isArray(v) ? (v.length === spatial ? v : Array(spatial).fill(v[0])) : Array(spatial).fill(v === undefined ? d : v);
  const kernel = pick(cfg.kernel_size, 1), stride = pick(cfg.stride, 1), dilation = pick(cfg.dilation, 1);
  let pads;
  if (cfg.padding === "same") pads = kernel.map((k, a) => Math.floor(dilation[a] * (k - 1) / 2));
  else if (cfg.padding === "valid") pads = kernel.map(() => 0);
  else pads = pick(cfg.padding, 0);
  const groups = cfg.groups || 1;
  // 1-D layers are 2-D ones with a single row.
  const two = (v, fill) => spatial === 1 ? [fill, v[0]] : v;
  return { kernel: two(kernel, 1), stride: two(stride, 1), dilation: two(dilation, 1), pads: two(pads, 0), groups };
}

// The sum of products of one convolution output, with its terms.
function convSum(layer, x, w, b, f, i, j) {
  const g = convGeometry(layer), cin = w.shape[1], [kh, kw] = [g.kernel[0], g.kernel[1]];
  const group = Math.floor(f / (w.shape[0] / g.groups));
  const terms = [];
  let total = b ? b.values[f] : 0;
  const px = planes(x);
  for (let c = 0; c < cin; c++) {
    for (let p = 0; p < kh; p++) {
      for (let q = 0; q < kw; q++) {
        const y = i * g.stride[0] + p * g.dilation[0] - g.pads[0], xx = j * g.stride[1] + q * g.dilation[1] - g.pads[1];
        if (y < 0 || xx < 0 || y >= px.rows || xx >= px.cols) continue;
        const weight = w.values[((f * cin + c) * kh + p) * kw + q], value = at(x, group * cin + c, y, xx);
        total += weight * value;
        terms.push({ c: group * cin + c, y, x: xx, weight, value });
      }
    }
  }
  return { total, terms };
}

function showFormula(box, text, value) {
  box.textContent = text;
  box.dataset.value = value === undefined ? "" : String(value);
}

function attachConvHover(layer, panel, input, output, box) {
  const w = decode(layer.weight), b = decode(layer.bias), x = input.array;
  if (!w || !x || planes(x).channels < w.shape[1] * (convGeometry(layer).groups)) return;
  output.canvases.forEach((canvas) => {
    canvas.addEventListener("mousemove", (event) => {
      const f = Number(canvas.dataset.channel), [i, j] = cellUnder(canvas, event);
      const p = planes(output.array);
      if (i < 0 || j < 0 || i >= p.rows || j >= p.cols) return;
      const { total, terms } = convSum(layer, x, w, b, f, i, j);
      const shown = terms.slice(0, 6).map((t) => `(${number(t.weight)} x ${number(t.value)})`);
      const more = terms.length > 6 ? ` + ... (${terms.length} products in all)` : "";
      const where = planes(output.array).rows === 1 ? `[${f}, ${j}]` : `[${f}, ${i}, ${j}]`;
      showFormula(box, `output${where} = b[${f}] + sum over the window of w x x_pad\n= ${number(b ? b.values[f] : 0)} + ${shown.join(" + ")}${more}\n= ${number(total)}   (the layer computed ${number(at(output.array, f, i, j))})`, total);
      panel.dataset.hoverCell = `${f},${i},${j}`;
      input.canvases.forEach((other) => {
        const c = Number(other.dataset.channel);
        drawPlane(other, x, c, input.scale, terms.filter((t) => t.c === c).map((t) => [t.y, t.x]));
      });
    });
  });
}

function attachConvBackwardHover(layer, panel, gradInput, gradOutput, box) {
  const w = decode(layer.weight), delta = gradOutput.array;
  if (!w || !delta || !gradInput.array) return;
  const g = convGeometry(layer), cin = w.shape[1], [kh, kw] = g.kernel;
  const pd = planes(delta), filters = w.shape[0];
  gradInput.canvases.forEach((canvas) => {
    canvas.addEventListener("mousemove", (event) => {
      const c = Number(canvas.dataset.channel), [y, x] = cellUnder(canvas, event);
      const group = Math.floor(c / cin), local = c % cin, perGroup = filters / g.groups;
      let total = 0; const sources = [];
      for (let f = group * perGroup; f < (group + 1) * perGroup && f < pd.channels; f++) {
        for (let p = 0; p < kh; p++) {
          for (let q = 0; q < kw; q++) {
            const oi = y + g.pads[0] - p * g.dilation[0], oj = x + g.pads[1] - q * g.dilation[1];
            if (oi % g.stride[0] || oj % g.stride[1]) continue;
            const i = oi / g.stride[0], j = oj / g.stride[1];
            if (i < 0 || j < 0 || i >= pd.rows || j >= pd.cols) continue;
            const weight = w.values[((f * cin + local) * kh + p) * kw + q];
            total += at(delta, f, i, j) * weight;
            sources.push({ f, i, j, weight });
          }
        }
      }
      const shown = sources.slice(0, 5).map((s) => `delta[${s.f},${s.i},${s.j}] x ${number(s.weight)}`);
      showFormula(box, `dL/dx[${c}, ${y}, ${x}] = sum of delta x w over the outputs whose windows read it (the Rot180 full convolution)\n= ${shown.join(" + ")}${sources.length > 5 ? ` + ... (${sources.length} in all)` : ""}\n= ${number(total)}   (the layer's backward gave ${number(at(gradInput.array, c, y, x))})`, total);
      gradOutput.canvases.forEach((other) => {
        const f = Number(other.dataset.channel);
        drawPlane(other, delta, f, gradOutput.scale, sources.filter((s) => s.f === f).map((s) => [s.i, s.j]));
      });
    });
  });
}

function attachMaxPoolBackwardHover(layer, gradInput, gradOutput, input, box) {
  const x = input.array, delta = gradOutput.array;
  if (!x || !delta) return;
  const cfg = layer.config, k = Array.isArray(cfg.kernel_size) ? cfg.kernel_size : [cfg.kernel_size, cfg.kernel_size];
  const s = cfg.stride === null || cfg.stride === undefined ? k : (Array.isArray(cfg.stride) ? cfg.stride : [cfg.stride, cfg.stride]);
  gradInput.canvases.forEach((canvas) => {
    canvas.addEventListener("mousemove", (event) => {
      const c = Number(canvas.dataset.channel), [y, xx] = cellUnder(canvas, event), pd = planes(delta);
      const routed = [];
      for (let i = 0; i < pd.rows; i++) {
        for (let j = 0; j < pd.cols; j++) {
          let best = -Infinity, by = -1, bx = -1;
          for (let p = 0; p < k[0]; p++) for (let q = 0; q < k[1]; q++) {
            const v = at(x, c, i * s[0] + p, j * s[1] + q);
            if (v > best) { best = v; by = i * s[0] + p; bx = j * s[1] + q; }
          }
          if (by === y && bx === xx) routed.push([i, j]);
        }
      }
      const total = routed.reduce((sum, [i, j]) => sum + at(delta, c, i, j), 0);
      showFormula(box, routed.length ? `dL/dx[${c}, ${y}, ${xx}] += delta of the output(s) ${routed.map(([i, j]) => `(${i}, ${j})`).join(", ")}: this cell was its window's maximum\n= ${number(total)}` : `dL/dx[${c}, ${y}, ${xx}] = 0: no window's maximum`, total);
      gradOutput.canvases.forEach((other) => {
        drawPlane(other, delta, Number(other.dataset.channel), gradOutput.scale, Number(other.dataset.channel) === c ? routed : []);
      });
    });
  });
}

// ---------------------------------------------------------------------------- layers
function weightGroup(layer) {
  const gw = decode(layer.grad_weight);
  if (!gw || gw.shape.length < 3) return null;
  const group = document.createElement("div");
  group.className = "group backward-only";
  group.dataset.map = "grad_weight";
  const heading = document.createElement("h3");
  // A transposed convolution's weight is (in_channels, out_channels, ...): its first axis
  // is the input channel a kernel reads, not an output filter.
  const transposed = layer.type.startsWith("ConvTranspose");
  heading.textContent = `dL/dw per ${transposed ? "input channel, output channel 0" : "filter, input channel 0"} (${gw.shape.join("x")})`;
  const row = document.createElement("div");
  row.className = "channels";
  const filterSize = gw.values.length / gw.shape[0], perChannel = filterSize / gw.shape[1];
  const scale = scaleOf(gw, true);
  for (let f = 0; f < Math.min(gw.shape[0], 16); f++) {
    const kernel = { shape: gw.shape.slice(2).length === 1 ? [1, gw.shape[2]] : gw.shape.slice(2),
      values: gw.values.slice(f * filterSize, f * filterSize + perChannel) };
    const canvas = document.createElement("canvas");
    canvas.title = transposed ? `input channel ${f}` : `filter ${f}`;
    drawPlane(canvas, { shape: [1, ...kernel.shape], values: kernel.values }, 0, scale, null);
    row.append(canvas);
  }
  group.append(heading, row, legend(scale));
  return group;
}

function buildPanel(layer) {
  const panel = document.createElement("div");
  panel.className = "panel";
  panel.dataset.panel = layer.name;
  const title = document.createElement("h2");
  title.textContent = `${layer.name} (${layer.type})`;
  const rule = document.createElement("div");
  rule.className = "rule"; rule.textContent = layer.rule;
  const arith = document.createElement("div");
  arith.className = "arith"; arith.textContent = "shape: " + layer.shape_arithmetic;
  const check = document.createElement("div");
  check.className = "check";
  const skipped = layer.check.skipped ? `; ${layer.check.skipped} entries with no derivative there (kinks on both sides) skipped` : "";
  check.textContent = `check: max relative error ${Number(layer.check.max_rel_error || 0).toExponential(1)} over ${layer.check.entries || 0} finite differences and chain-rule sums (float64)${skipped}`;
  const maps = document.createElement("div");
  maps.className = "maps";
  const input = mapGroup(layer.inputs > 1 ? `input 1 of ${layer.inputs}` : "input", layer.input, false, "input");
  const output = mapGroup("output", layer.output, false, "output");
  const gradOutput = mapGroup("grad_output = delta", layer.grad_output, true, "grad_output");
  const gradInput = mapGroup("grad_input", layer.grad_input, true, "grad_input");
  maps.append(input.element, output.element, gradOutput.element, gradInput.element);
  const weights = weightGroup(layer);
  if (weights) maps.append(weights);
  const box = document.createElement("div");
  box.className = "formula"; box.dataset.formula = "";
  box.textContent = "Hover over a cell of the output (forward) or of grad_input (backward).";
  panel.append(title, rule, arith, check, maps, box);
  if (layer.type === "Conv2d" || layer.type === "Conv1d") {
    attachConvHover(layer, panel, input, output, box);
    attachConvBackwardHover(layer, panel, gradInput, gradOutput, box);
  }
  if (layer.type === "MaxPool2d") attachMaxPoolBackwardHover(layer, gradInput, gradOutput, input, box);
  return panel;
}

// A segmenter's label and predicted masks in the classes' colours (ignored pixels in their
// own colour), and a legend of the classes either mask holds.
function drawMasks(masks) {
  const root = document.getElementById("masks"), found = new Set();
  const figures = document.createElement("div");
  figures.className = "masks";
  for (const [role, title] of [["label", "label mask"], ["prediction", "predicted mask"]]) {
    const mask = decode(masks[role]);
    const [rows, cols] = mask.shape.length === 2 ? mask.shape : [1, mask.shape[0]];
    const size = Math.max(1, Math.min(8, Math.floor(128 / Math.max(rows, cols))));
    const canvas = document.createElement("canvas");
    canvas.dataset.mask = role; canvas.dataset.cell = size;
    canvas.width = cols * size; canvas.height = rows * size;
    const g = canvas.getContext("2d");
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const value = mask.values[i * cols + j], known = value < masks.palette.length;
        if (known) found.add(value);
        const [r, gr, b] = known ? masks.palette[value] : masks.ignore_colour;
        g.fillStyle = `rgb(${r},${gr},${b})`;
        g.fillRect(j * size, i * size, size, size);
      }
    }
    const figure = document.createElement("figure"), caption = document.createElement("figcaption");
    caption.textContent = `${title} (${rows}x${cols})`;
    figure.append(canvas, caption);
    figures.append(figure);
  }
  const key = document.createElement("div");
  key.className = "classes";
  [...found].sort((a, b) => a - b).forEach((value) => {
    const item = document.createElement("span"), swatch = document.createElement("i");
    const [r, g, b] = masks.palette[value];
    swatch.style.background = `rgb(${r},${g},${b})`;
    item.append(swatch, masks.classes[value]);
    key.append(item);
  });
  root.append(figures, key);
}

function show(name) {
  document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("shown", p.dataset.panel === name));
  document.querySelectorAll("#layers .layer").forEach((b) => b.classList.toggle("selected", b.dataset.layer === name));
}

function buildLayers() {
  const nav = document.getElementById("layers"), panels = document.getElementById("panels");
  trace.layers.forEach((layer) => {
    const entry = document.createElement("button");
    entry.type = "button";
    entry.className = "layer" + (layer.inputs > 1 ? " joins" : "");
    entry.dataset.layer = layer.name;
    entry.textContent = layer.name;
    const detail = document.createElement("small");
    detail.textContent = `${layer.type}: ${layer.input_shape.join("x")} -> ${layer.output_shape.join("x")}`;
    entry.append(detail);
    entry.addEventListener("click", () => show(layer.name));
    nav.append(entry);
    panels.append(buildPanel(layer));
  });
  if (trace.masks) {
    document.getElementById("summary").textContent = trace.masks.summary;
    drawMasks(trace.masks);
  } else {
    const top = trace.probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 3);
    document.getElementById("summary").textContent = `prediction ${trace.prediction} (${top.map(([p, i]) => `${i}: ${p.toFixed(3)}`).join(", ")}), label ${trace.label}, loss ${number(trace.loss)}; ${trace.layers.length} entries`;
  }
  if (trace.layers.length) show(trace.layers[0].name);
}

function setView(view) {
  document.body.className = view;
  document.getElementById("view-forward").classList.toggle("active", view === "forward");
  document.getElementById("view-backward").classList.toggle("active", view === "backward");
}

// ---------------------------------------------------------------------------- sandbox
function outputSize(n, k, s, p, d) { return Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1; }

function gridCanvas(rows, cols, fill, label) {
  const size = Math.max(6, Math.min(18, Math.floor(240 / Math.max(rows, cols))));
  const canvas = document.createElement("canvas");
  canvas.width = cols * size; canvas.height = rows * size;
  const g = canvas.getContext("2d");
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
    g.fillStyle = fill(i, j); g.fillRect(j * size, i * size, size - 1, size - 1);
    const text = label ? label(i, j) : "";
    if (text && size >= 14) { g.fillStyle = "#000"; g.font = `${size - 6}px sans-serif`; g.fillText(text, j * size + 2, i * size + size - 4); }
  }
  return canvas;
}

function buildSandbox() {
  const root = document.getElementById("sandbox");
  root.innerHTML = "<h2>Sandbox: the notes' shape arithmetic and the backward picture</h2>";
  const controls = document.createElement("div");
  controls.className = "controls";
  const settings = { size: [7, 1, 20], kernel: [3, 1, 7], stride: [2, 1, 4], padding: [1, 0, 3], dilation: [1, 1, 3] };
  const inputs = {};
  for (const [name, [value, low, high]] of Object.entries(settings)) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: low, max: high, value, name });
    const shown = document.createElement("span");
    label.append(`${name}: `, shown, input);
    controls.append(label);
    inputs[name] = { input, shown };
  }
  const formula = document.createElement("div");
  formula.className = "formula";
  const grids = document.createElement("div");
  grids.className = "grids";
  root.append(controls, formula, grids);
  function redraw() {
    const v = Object.fromEntries(Object.entries(inputs).map(([k, o]) => [k, Number(o.input.value)]));
    Object.entries(inputs).forEach(([k, o]) => { o.shown.textContent = o.input.value; });
    const span = v.dilation * (v.kernel - 1) + 1, padded = v.size + 2 * v.padding;
    const out = outputSize(v.size, v.kernel, v.stride, v.padding, v.dilation);
    root.dataset.outputSize = String(out);
    grids.innerHTML = "";
    if (out < 1) {
      formula.textContent = `floor((${v.size} + 2*${v.padding} - ${v.dilation}*(${v.kernel} - 1) - 1)/${v.stride}) + 1 = ${out}: the kernel (${span} wide) does not fit the padded input (${padded})`;
      return;
    }
    formula.textContent = `forward: floor((${v.size} + 2*${v.padding} - ${v.dilation}*(${v.kernel} - 1) - 1)/${v.stride}) + 1 = ${out}\nbackward: delta (${out}) zero-inserted to ${(out - 1) * v.stride + 1}, padded by ${v.dilation}*(${v.kernel} - 1) = ${v.dilation * (v.kernel - 1)} on each side, correlated with the Rot180 kernel: ${(out - 1) * v.stride + 1 + 2 * v.dilation * (v.kernel - 1) - span + 1} positions = the padded input (${padded}) less the ${padded - ((out - 1) * v.stride + span)} samples no window reached; then the padding (${v.padding}) is removed`;
    const window = (i, j) => i >= 0 && j >= 0 && i < span && j < span && i % v.dilation === 0 && j % v.dilation === 0;
    const inside = (i, j) => i >= v.padding && j >= v.padding && i < v.padding + v.size && j < v.padding + v.size;
    const figure = (canvas, caption) => { const f = document.createElement("figure"); const c = document.createElement("figcaption"); c.textContent = caption; f.append(canvas, c); grids.append(f); };
    figure(gridCanvas(padded, padded, (i, j) => window(i, j) ? "#ffb000" : inside(i, j) ? "#9ecae1" : "#eeeeee"), `padded input ${padded}x${padded} (grey: padding; orange: the first window, taps ${v.dilation} apart)`);
    figure(gridCanvas(out, out, (i, j) => i === 0 && j === 0 ? "#ffb000" : "#fdd0a2"), `output ${out}x${out}`);
    const inserted = (out - 1) * v.stride + 1, full = v.dilation * (v.kernel - 1), big = inserted + 2 * full;
    figure(gridCanvas(big, big, (i, j) => {
      const a = i - full, b = j - full;
      if (a < 0 || b < 0 || a >= inserted || b >= inserted) return "#eeeeee";
      return a % v.stride === 0 && b % v.stride === 0 ? "#de2d26" : "#ffffff";
    }), `delta zero-inserted (white: the ${v.stride - 1} zeros between) and padded by ${full} (grey)`);
    figure(gridCanvas(v.kernel, v.kernel, () => "#c7e9c0", (i, j) => `${v.kernel * v.kernel - (i * v.kernel + j)}`), "Rot180(w): the kernel's taps in reverse order");
  }
  Object.values(inputs).forEach((o) => o.input.addEventListener("input", redraw));
  redraw();
}

document.getElementById("view-forward").addEventListener("click", () => setView("forward"));
document.getElementById("view-backward").addEventListener("click", () => setView("backward"));
setView("forward");
buildLayers();
buildSandbox();
