"""PNG figures of the explanations: grids with their entries written in, like the notes' slides.

Each explanation becomes rows of panels (one grid each): for a convolution the input, kernel
and output; the padded delta map, the rotated kernel and the input gradient; the weight
gradient. Zeros that come from padding or zero insertion are grey, dropped entries hatched,
max-pooling's selected entries highlighted. Text is matplotlib's mathtext (LaTeX subset).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convprop.explain import notation, render
from convprop.io.files import atomic_write_bytes

_SPLIT = re.compile(r" (?=[+-] )")
GREY = "#e6e6e6"
HIGHLIGHT = "#ffe08a"
OVERLAP = "#ffb36b"
DROPPED = "#f3d6d6"


@dataclass
class Panel:
    title: str
    cells: np.ndarray  # 2-D array of strings (mathtext lines joined by newlines)
    fill: np.ndarray | None = None  # 2-D array of colours (or None for white)
    muted: np.ndarray | None = None  # 2-D bool: entries written in grey (e.g. dropped)
    values: np.ndarray | None = None  # 2-D floats: a heat map behind the numbers
    row_labels: list[str] | None = None
    col_labels: list[str] | None = None


_SUB = str.maketrans("0123456789,", "₀₁₂₃₄₅₆₇₈₉,")
_SUP = str.maketrans("0123456789scf()", "⁰¹²³⁴⁵⁶⁷⁸⁹ˢᶜᶠ⁽⁾")
_SMALL = set("₀₁₂₃₄₅₆₇₈₉⁰¹²³⁴⁵⁶⁷⁸⁹ˢᶜᶠ⁽⁾")  # narrow glyphs: count less in width estimates
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unicode_name(name: str) -> str:
    """``delta_s1_f2_11`` -> δ₁₁⁽ˢ¹ᶠ²⁾: plain text with sub/superscripts (fast to draw;
    matplotlib's mathtext costs ~20 ms per distinct string)."""
    parsed = notation.parse_name(name)
    base = {"delta": "δ"}.get(parsed.base, parsed.base)
    joiner = "" if all(i <= 9 for i in parsed.spatial) else ","
    out = base + joiner.join(str(i) for i in parsed.spatial).translate(_SUB)
    if parsed.groups:
        groups = "".join(f"{letter}{i}" for letter, i in parsed.groups)
        out += f"({groups})".translate(_SUP)
    return out


def _expr_cell(expr: Any, order: notation.Order = notation.NATURAL) -> str:
    if isinstance(expr, (float, int, np.floating, np.integer)):
        return render.number(expr)
    text = notation.text(expr, order)
    text = _TOKEN.sub(lambda m: unicode_name(m.group(0)), text)
    return "\n".join(_SPLIT.split(text))


def _cells(array: np.ndarray, order: notation.Order = notation.NATURAL) -> np.ndarray:
    array = np.asarray(array, dtype=object)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    out = np.empty(array.shape, dtype=object)
    for index in np.ndindex(*array.shape):
        out[index] = _expr_cell(array[index], order)
    return out


def _visible_length(line: str) -> int:
    """Rough printed width of a line in characters (mathtext markup and the narrow sub- and
    superscripts count less)."""
    stripped = re.sub(r"\\(delta|partial|frac|max|mathrm|star)", "d", line)
    stripped = re.sub(r"[{}$\\^]", "", stripped)
    stripped = re.sub(r"_(\w)", r"\1", stripped)
    small = sum(1 for ch in stripped if ch in _SMALL)
    return max(1, int((len(stripped) - small * 0.25) * 0.9))


def _panel_size(panel: Panel) -> tuple[list[float], list[float], float, float]:
    """Column widths and row heights (inches) and the label margins."""
    rows, cols = panel.cells.shape
    col_widths = _grid_widths(panel)
    row_heights = []
    for r in range(rows):
        lines = max(len(str(panel.cells[r, c]).split("\n")) for c in range(cols))
        row_heights.append(0.2 * lines + 0.16)
    left = 0.45 if panel.row_labels else 0.0
    top = 0.3 if panel.col_labels else 0.0
    # The title must fit above the grid: widen the last column if it does not.
    shortfall = _title_width(panel.title) - (sum(col_widths) + left)
    if shortfall > 0:
        col_widths[-1] += shortfall
    return col_widths, row_heights, left, top


def _title_width(title: str) -> float:
    return 0.095 * _visible_length(title) + 0.1


def _grid_widths(panel: Panel) -> list[float]:
    """Column widths without the title's widening (cells keep their natural width); maps of
    numbers get equal columns."""
    rows, cols = panel.cells.shape
    widths = [
        max(
            0.42,
            0.085
            * max(
                _visible_length(line)
                for r in range(rows)
                for line in str(panel.cells[r, c]).split("\n")
            )
            + 0.16,
        )
        for c in range(cols)
    ]
    if panel.values is not None:
        widths = [max(widths)] * cols
    return widths


def _draw(fig: Any, panel: Panel, x0: float, y0: float, fig_w: float, fig_h: float) -> None:
    """Draw ``panel`` with its top-left corner at (x0, y0) inches from the figure's top-left."""
    import matplotlib.colors as mcolors
    from matplotlib.patches import Rectangle

    col_widths, row_heights, left, top = _panel_size(panel)
    width, height = sum(col_widths) + left, sum(row_heights) + top
    margin = 0.03  # so that the outer grid lines are not clipped
    ax = fig.add_axes(
        [
            (x0 - margin) / fig_w,
            1 - (y0 + height + 0.35 + margin) / fig_h,
            (width + 2 * margin) / fig_w,
            (height + 0.35 + 2 * margin) / fig_h,
        ]
    )
    ax.set_xlim(-margin, width + margin)
    ax.set_ylim(height + 0.35 + margin, -margin)
    ax.axis("off")
    ax.text(0, 0.12, panel.title, fontsize=10, fontweight="bold", va="top", ha="left")
    if panel.values is not None:
        finite = panel.values[np.isfinite(panel.values)]
        scale = float(np.max(np.abs(finite))) if finite.size else 1.0
        norm = mcolors.TwoSlopeNorm(vmin=-scale - 1e-12, vcenter=0.0, vmax=scale + 1e-12)
        cmap = __import__("matplotlib").colormaps["RdBu_r"]
    y = 0.35 + top
    real_widths = _grid_widths(panel)
    for r, row_height in enumerate(row_heights):
        x = left
        if panel.row_labels:
            ax.text(
                left - 0.06,
                y + row_height / 2,
                panel.row_labels[r],
                fontsize=8,
                ha="right",
                va="center",
            )
        for c, col_width in enumerate(real_widths):
            colour = "white"
            if panel.fill is not None and panel.fill[r, c]:
                colour = panel.fill[r, c]
            if panel.values is not None:
                colour = cmap(norm(panel.values[r, c]) * 0.7 + 0.15)
            ax.add_patch(
                Rectangle(
                    (x, y),
                    col_width,
                    row_height,
                    facecolor=colour,
                    edgecolor="#555555",
                    linewidth=0.8,
                )
            )
            muted = panel.muted is not None and panel.muted[r, c]
            if r == 0 and panel.col_labels:
                ax.text(
                    x + col_width / 2,
                    y - 0.06,
                    panel.col_labels[c],
                    fontsize=8,
                    ha="center",
                    va="bottom",
                )
            ax.text(
                x + col_width / 2,
                y + row_height / 2,
                str(panel.cells[r, c]),
                fontsize=9,
                ha="center",
                va="center",
                linespacing=1.25,
                color="#9a7b7b" if muted else "black",
            )
            x += col_width
        y += row_height


def _save(rows: list[list[Panel]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    gap = 0.4
    sizes = [[_panel_size(p) for p in row] for row in rows]
    row_widths = [
        sum(sum(cw) + left for cw, _, left, _ in row) + gap * (len(row) - 1) for row in sizes
    ]
    row_heights = [max(sum(rh) + top for _, rh, _, top in row) + 0.35 for row in sizes]
    fig_w = max(max(row_widths), _title_width(title) * 1.2) + 0.6
    fig_h = sum(row_heights) + gap * (len(rows) - 1) + 0.9
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=110)
    fig.text(0.3 / fig_w, 1 - 0.25 / fig_h, title, fontsize=12, va="top", ha="left")
    y = 0.7
    for row, row_size, row_height in zip(rows, sizes, row_heights, strict=True):
        x = 0.3
        for panel, (cw, _, left, _) in zip(row, row_size, strict=True):
            _draw(fig, panel, x, y, fig_w, fig_h)
            x += sum(cw) + left + gap
        y += row_height + gap
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _zero_fill(array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    fill = np.empty(mask.shape, dtype=object)
    fill[...] = None
    fill[mask] = GREY
    return fill


def _as2d(array: np.ndarray) -> np.ndarray:
    return array.reshape(1, -1) if array.ndim == 1 else array


# ------------------------------------------------------------------------------ per kind
def _conv_rows(e: Any) -> tuple[list[list[Panel]], str]:
    cfg = e.config
    st = e.style
    several = cfg.batch > 1 or cfg.in_channels > 1 or cfg.out_channels > 1
    which = " (sample 1, channel 1, filter 1)" if several else ""
    d = r"\delta" if st.grad == "delta" else "dy"
    pad_mask = _as2d(e.padding_mask())
    padded_input = _as2d(e.padded_input[0, 0])
    forward = [
        Panel(
            "input $x$" + (" (zero-padded)" if pad_mask.any() else ""),
            _cells(padded_input),
            fill=_zero_fill(padded_input, pad_mask),
        ),
        Panel("kernel $w$", _cells(_as2d(e.w[0, 0]))),
    ]
    if cfg.convention == "convolution":
        forward.append(Panel(r"slides: Rot$_{180}(w)$", _cells(_as2d(e.kernel[0, 0]))))
    forward.append(
        Panel(
            f"output ${st.out}$ (bias omitted)" if cfg.bias else f"output ${st.out}$",
            _cells(_as2d(e.forward[0, 0] - e.b[0]), st.forward),
        )
    )
    padded_delta = _as2d(e.padded_delta[0, 0])
    zero_mask = np.vectorize(lambda v: v == 0)(padded_delta)
    backward = [
        Panel(
            f"padded ${d}$" + (" (zero-inserted)" if any(s > 1 for s in cfg.stride) else ""),
            _cells(padded_delta),
            fill=_zero_fill(padded_delta, zero_mask),
        ),
        Panel(r"Rot$_{180}(w)$", _cells(_as2d(e.rotated_kernel[0, 0]))),
    ]
    if pad_mask.any():
        grad_padded = _as2d(e.grad_padded_input[0, 0])
        fill = np.empty(pad_mask.shape, dtype=object)
        fill[pad_mask] = DROPPED
        backward.append(
            Panel(
                r"result $\partial L/\partial x_{pad}$ (pink: padding, dropped)",
                _cells(grad_padded, st.grad_input),
                fill=fill,
                muted=pad_mask,
            )
        )
    else:
        backward.append(
            Panel(
                r"result $\partial L/\partial x$", _cells(_as2d(e.grad_input[0, 0]), st.grad_input)
            )
        )
    if cfg.convention == "correlation":
        weight_title = rf"$\partial L/\partial w = x \star {d}$"
    else:
        weight_title = rf"$\partial L/\partial w$ = Rot$_{{180}}(x \star {d})$"
    weight = [Panel(weight_title, _cells(_as2d(e.grad_weight[0, 0]), st.grad_weight))]
    title = f"Convolution: {cfg.describe()} ({cfg.convention} convention){which}"
    return [forward, backward, weight], title


def _matrix_rows(e: Any) -> tuple[list[list[Panel]], str]:
    def labels(symbols: np.ndarray) -> list[str]:
        return [f"${notation.parse_name(s.name).latex}$" for s in symbols]

    def fill(matrix: np.ndarray) -> np.ndarray:
        out = np.empty(matrix.shape, dtype=object)
        out[np.vectorize(lambda v: v == 0)(matrix)] = GREY
        return out

    rows = [
        [
            Panel(
                "$M$: $h = M x$",
                _cells(e.M),
                fill=fill(e.M),
                row_labels=labels(e.h),
                col_labels=labels(e.x),
            )
        ],
        [
            Panel(
                r"$M^T$: $\partial L/\partial x = M^T \delta$",
                _cells(e.M_T),
                fill=fill(e.M_T),
                row_labels=labels(e.x),
                col_labels=labels(e.delta),
            ),
            Panel(r"Rot$_{180}(w)$", _cells(e.conv.rotated_kernel[0, 0])),
        ],
        [
            Panel(
                r"$Q$: $h = Q m$, $\partial L/\partial m = Q^T \delta$",
                _cells(e.Q),
                fill=fill(e.Q),
                row_labels=labels(e.h),
                col_labels=labels(e.m),
            )
        ],
    ]
    return rows, f"Convolution as a matrix: {e.config.describe()}"


def _pool_rows(e: Any) -> tuple[list[list[Panel]], str]:
    values = _as2d(e.values)
    fill = np.empty(values.shape, dtype=object)
    if e.mode == "max":
        counts: dict[tuple, int] = {}
        for index in e.argmax.values():
            counts[index] = counts.get(index, 0) + 1
        for index, count in counts.items():
            fill[(0, *index) if e.values.ndim == 1 else index] = OVERLAP if count > 1 else HIGHLIGHT
    order = notation.Order(("dy",))
    title_in = "input $x$" + (
        " (selected: yellow; by several windows: orange)" if e.mode == "max" else ""
    )
    rows = [
        [
            Panel(title_in, _cells(values), fill=fill),
            Panel("output $y$", _cells(_as2d(e.numeric_output))),
        ],
        [
            Panel(r"$\partial L/\partial x$", _cells(_as2d(e.grad_input), order), fill=fill),
            Panel(r"$dy$ (values)", _cells(_as2d(e.grad_values))),
            Panel(r"$\partial L/\partial x$ (values)", _cells(_as2d(e.numeric_grad_input))),
        ],
    ]
    mode = "Max" if e.mode == "max" else "Mean"
    title = (
        f"{mode} pooling: {'x'.join(map(str, e.input_size))} input, "
        f"{'x'.join(map(str, e.kernel_size))} window, stride "
        f"{'x'.join(map(str, e.stride))}"
    )
    return rows, title


def _heat(title: str, array: np.ndarray) -> Panel:
    array = _as2d(np.asarray(array, dtype=np.float64))
    return Panel(title, _cells(array), values=array)


def _network_rows(e: Any) -> tuple[list[list[Panel]], str]:
    fw, bw = e.forward, e.backward
    forward = [_heat("input $x$", fw["x"])]
    forward += [_heat(f"$z$ map {f + 1}", fw["z"][f]) for f in range(e.filters)]
    forward += [_heat(f"$u$ map {f + 1}", fw["u"][f]) for f in range(e.filters)]
    forward += [_heat("$p$ = softmax($s$)", fw["p"])]
    backward = [_heat(r"$\partial E/\partial s$", bw["ds"])]
    backward += [
        _heat(rf"$\partial E/\partial u$ map {f + 1}", bw["du"][f]) for f in range(e.filters)
    ]
    backward += [
        _heat(rf"$\delta = \partial E/\partial z$ map {f + 1}", bw["dz"][f])
        for f in range(e.filters)
    ]
    weights = [
        _heat(rf"$\partial E/\partial w$ map {f + 1}", bw["dw1"][f, 0]) for f in range(e.filters)
    ]
    weights.append(_heat(r"$\partial E/\partial x$", bw["dx"]))
    title = (
        f"A tiny CNN ({e.activation}, seed {e.seed}): forward values, deltas, gradients; "
        f"E = {render.number(fw['E'])} -> {render.number(e.loss_after)} after one step"
    )
    return [forward, backward, weights], title


def write(explanation: Any, path: Path) -> Path:
    """Write ``explanation``'s figure as a PNG at ``path``."""
    if path.suffix.lower() != ".png":
        raise ValueError(f"explain: the figure path must end in .png, got {str(path)!r}")
    builders = {
        "conv": _conv_rows,
        "matrix": _matrix_rows,
        "pool": _pool_rows,
        "network": _network_rows,
    }
    rows, title = builders[explanation.kind](explanation)
    return _save(rows, path, title)
