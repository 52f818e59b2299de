"""``explain model --html``: one self-contained page of a traced network.

Everything is inline: the script and styles (``page.js``, ``page.css`` beside this module) and
the trace's numbers (float32, base64, in a JSON block), so the file makes no request of any
kind and opens from a USB stick or an e-mail. The page draws the network as a column of layers;
each layer's panel shows its maps (a diverging scale centred at zero for gradients, with its
legend), its weight gradients per filter, the rule and the shape arithmetic. Hovering an output
cell of a convolution highlights the input window and kernel and shows the sum of products with
the real numbers; in the backward view, hovering a cell of the input gradient highlights where
that gradient came from. A sandbox redraws the notes' shape arithmetic and the zero-insertion
picture of the backward pass for any input size, kernel, stride, padding and dilation.

For a segmenter the header also draws the true (label) mask and the predicted mask in the
classes' colours, with a legend of the classes found.

Stable hooks: every layer's entry carries ``data-layer="<name>"`` and its panel
``data-panel="<name>"``; the sandbox is ``data-sandbox``; a segmenter's masks are
``data-mask="label"`` and ``data-mask="prediction"``.
"""

from __future__ import annotations

import base64
import html as html_escape
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from convprop.explain.trace import LayerEntry, Trace

# At most this many channels of each map go into the page (every channel is in the JSON).
MAX_CHANNELS = 16


def _packed(array: Any, channels: int | None = MAX_CHANNELS) -> dict[str, Any] | None:
    """An array as float32 bytes in base64 with its shape (its first axis cut to ``channels``)."""
    if array is None:
        return None
    values = np.asarray(array, dtype=np.float32)
    if channels is not None and values.ndim >= 2 and values.shape[0] > channels:
        values = values[:channels]
    return {
        "shape": list(values.shape),
        "data": base64.b64encode(np.ascontiguousarray(values).tobytes()).decode(),
    }


def _entry(entry: LayerEntry, index: int) -> dict[str, Any]:
    several = isinstance(entry.input, list)
    first_input = entry.input[0] if several else entry.input
    first_grad = entry.grad_input[0] if several else entry.grad_input
    conv = entry.type in ("Conv1d", "Conv2d")
    # A convolution's hovered sum of products reads every input channel.
    input_channels = None if conv else MAX_CHANNELS
    return {
        "index": index,
        "name": entry.name,
        "type": entry.type,
        "config": entry.config,
        "shape_arithmetic": entry.shape_arithmetic,
        "rule": entry.rule,
        "check": entry.check,
        "inputs": len(entry.input) if several else 1,
        "input_shape": list(np.shape(first_input)),
        "output_shape": list(np.shape(entry.output)),
        "input": _packed(first_input, input_channels),
        "output": _packed(entry.output),
        "grad_output": _packed(entry.grad_output),
        "grad_input": _packed(first_grad),
        "weight": _packed(entry.weight, None) if conv else None,
        "bias": _packed(entry.bias, None) if conv else None,
        "grad_weight": _packed(entry.grad_weight),
        "sources": entry.sources,
    }


def _masks(trace: Trace) -> dict[str, Any]:
    """A segmenter's true and predicted masks, the summary line and the classes' colours."""
    from convprop.explain.trace_text import segmentation_header
    from convprop.plots import IGNORE_COLOUR, class_palette

    count = int(trace.probabilities.shape[0])
    classes = trace.classes if trace.classes and len(trace.classes) == count else None
    names = classes or [str(i) for i in range(count)]
    return {
        "label": _packed(np.asarray(trace.label), None),
        "prediction": _packed(np.asarray(trace.prediction), None),
        "classes": names,
        "palette": class_palette(names).tolist(),
        "ignore_colour": list(IGNORE_COLOUR),
        "summary": segmentation_header(trace),
    }


def data(trace: Trace) -> dict[str, Any]:
    """The numbers the page draws (a subset of ``Trace.to_dict``, packed); for a segmenter
    its masks instead of the label, prediction and probabilities."""
    segment = trace.task == "segment"
    return {
        "run": trace.run,
        "image": trace.image,
        "task": trace.task,
        "label": None if segment else trace.label,
        "prediction": None if segment else trace.prediction,
        "probabilities": [] if segment else [float(p) for p in trace.probabilities],
        "masks": _masks(trace) if segment else None,
        "loss": float(trace.loss),
        "max_channels": MAX_CHANNELS,
        "layers": [_entry(entry, i) for i, entry in enumerate(trace.entries)],
    }


# Nothing may be fetched: no script, style, image or connection from anywhere but the page.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _asset(name: str) -> str:
    return resources.files("convprop.explain").joinpath("page_assets", name).read_text()


def html(trace: Trace) -> str:
    """The page as one string of HTML."""
    title = html_escape.escape(f"convprop explain model: {trace.run or trace.image or 'network'}")
    payload = json.dumps(data(trace)).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<title>{title}</title>
<style>{_asset("page.css")}</style>
</head>
<body>
<header><h1>{title}</h1><p id="summary"></p><div id="masks"></div>
<div class="views">
<button type="button" id="view-forward" class="active">forward</button>
<button type="button" id="view-backward">backward</button>
</div></header>
<main>
<nav id="layers" aria-label="layers"></nav>
<section id="panels"></section>
</main>
<section id="sandbox" data-sandbox></section>
<script type="application/json" id="trace-data">{payload}</script>
<script>{_asset("page.js")}</script>
</body>
</html>
"""
