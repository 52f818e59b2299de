"""``explain model --figure``: one PNG of the traced maps, a row per layer with maps, columns
input, output, delta = dL/d(output) and dL/d(input) (their first channel)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convprop.io.files import atomic_write_bytes

if TYPE_CHECKING:
    from convprop.explain.trace import Trace

MAX_ROWS = 12
COLUMNS = (("input", False), ("output", False), ("grad_output", True), ("grad_input", True))


def _plane(value: Any) -> np.ndarray | None:
    array = np.asarray(value[0] if isinstance(value, list) else value, dtype=np.float64)
    if array.ndim == 3:
        return array[0]
    if array.ndim == 2:
        return array
    return None


def write(trace: Trace, path: Path) -> Path:
    from matplotlib.figure import Figure

    rows = [
        e for e in trace.entries if _plane(e.output) is not None and _plane(e.input) is not None
    ]
    if len(rows) > MAX_ROWS:
        picks = np.linspace(0, len(rows) - 1, MAX_ROWS).round().astype(int)
        rows = [rows[i] for i in sorted(set(picks))]
    figure = Figure(figsize=(8, 1.6 * max(len(rows), 1) + 0.6), layout="constrained")
    axes = figure.subplots(max(len(rows), 1), len(COLUMNS), squeeze=False)
    for r, entry in enumerate(rows):
        for c, (key, gradient) in enumerate(COLUMNS):
            axis = axes[r, c]
            axis.set_xticks([]), axis.set_yticks([])
            plane = _plane(getattr(entry, key))
            if plane is None:
                axis.axis("off")
                continue
            if gradient:
                limit = float(np.abs(plane).max()) or 1.0
                axis.imshow(plane, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
            else:
                axis.imshow(plane, cmap="viridis", aspect="auto")
            if r == 0:
                axis.set_title(key.replace("_", " "), fontsize=9)
            if c == 0:
                axis.set_ylabel(f"{entry.name}\n{entry.type}", fontsize=7)
    if trace.task == "segment":
        target = f"per-pixel loss over {trace.labelled_pixels} labelled pixels"
    else:
        target = f"label {trace.label}, prediction {trace.prediction}"
    figure.suptitle(
        f"{trace.run or 'network'}: {trace.image} ({target}); channel 0 of each map",
        fontsize=9,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path
