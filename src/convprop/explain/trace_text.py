"""``explain model`` in the terminal and in Markdown: per layer its shapes, the rule of the
notes, the norms and largest entries of its maps and gradients, and the verification. A
segmenter's header gives its predicted and true masks as the classes found by pixel count."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from convprop.data.canvases import IGNORE
from convprop.explain.trace_rules import top_entries

if TYPE_CHECKING:
    from convprop.explain.trace import LayerEntry, Trace


def _arrays(value: Any) -> list[np.ndarray]:
    return [np.asarray(v) for v in value] if isinstance(value, list) else [np.asarray(value)]


def _shape(value: Any) -> str:
    return " + ".join("x".join(map(str, a.shape)) or "scalar" for a in _arrays(value))


def _summary(name: str, value: Any) -> str:
    arrays = _arrays(value)
    norm = float(np.sqrt(sum(float(np.sum(a.astype(np.float64) ** 2)) for a in arrays)))
    top = top_entries(arrays[0], 2) if arrays[0].size else []
    largest = ", ".join(f"{list(i)}: {v:.4g}" for i, v in top)
    return f"{name} {_shape(value)}, norm {norm:.4g}" + (f" (largest {largest})" if largest else "")


def _verdict(entry: LayerEntry) -> str:
    from convprop.explain.trace import AGREEMENT

    error, count = entry.check.get("max_rel_error", 0.0), int(entry.check.get("entries", 0))
    skipped = int(entry.check.get("skipped", 0))
    # Finite differences cannot test an entry where the loss has no derivative (tied maxima
    # of a flat region moving apart, kinks on both sides of the step).
    unchecked = f"; {skipped} entries with no derivative there skipped" if skipped else ""
    if not count:
        if skipped:
            return f"not checked{unchecked}"
        return "not checked (no gradient reaches it)"
    mark = "ok" if error < AGREEMENT else "MISMATCH"
    return f"{mark}: max relative error {error:.2g} over {count} checks{unchecked}"


def _lines(entry: LayerEntry) -> list[str]:
    lines = [
        f"{entry.name} ({entry.type})  {entry.shape_arithmetic}",
        f"  rule: {entry.rule}",
        "  " + _summary("input", entry.input),
        "  " + _summary("output", entry.output),
        "  " + _summary("grad_output (delta)", entry.grad_output),
        "  " + _summary("grad_input", entry.grad_input),
    ]
    if entry.grad_weight is not None:
        lines.append("  " + _summary("grad_weight", entry.grad_weight))
    if entry.grad_bias is not None:
        lines.append("  " + _summary("grad_bias", entry.grad_bias))
    lines.append(f"  check: {_verdict(entry)} (finite differences in float64, and the chain rule)")
    return lines


def class_counts(mask: np.ndarray, classes: list[str] | None, ignore: int | None = None) -> str:
    """The classes of a mask by pixel count, most first: ``background 3700, 3 250``."""
    values = np.asarray(mask).ravel()
    if ignore is not None:
        values = values[values != ignore]
    found, counts = np.unique(values, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    names = [
        classes[int(found[i])] if classes and int(found[i]) < len(classes) else str(found[i])
        for i in order
    ]
    return ", ".join(f"{name} {int(counts[i])}" for name, i in zip(names, order, strict=True))


def segmentation_header(trace: Trace) -> str:
    """The line that says what a segmenter predicted, against which mask, and the loss."""
    mask = np.asarray(trace.label)
    labelled = mask != IGNORE
    prediction = np.asarray(trace.prediction)
    agree = float(np.mean(prediction[labelled] == mask[labelled]))
    ignored = int(mask.size - np.count_nonzero(labelled))
    return (
        f"prediction {class_counts(prediction, trace.classes)} (pixels per class); "
        f"label mask {class_counts(mask, trace.classes, IGNORE)}"
        + (f", {ignored} ignored" if ignored else "")
        + f"; pixel accuracy {agree:.4f}; loss {trace.loss:.4g}, the per-pixel cross-entropy "
        f"over {trace.labelled_pixels} labelled pixels; {len(trace.entries)} entries, worst "
        f"check {trace.max_rel_error:.2g}"
    )


def _header(trace: Trace) -> list[str]:
    source = f"{trace.run}, {trace.image}" if trace.run else (trace.image or "the image")
    if trace.task == "segment":
        return [f"explain model: {source}", segmentation_header(trace)]
    top = np.argsort(-trace.probabilities)[:3]
    ranking = ", ".join(f"{i}: {trace.probabilities[i]:.4f}" for i in top)
    return [
        f"explain model: {source}",
        f"prediction {trace.prediction} ({ranking}); label {trace.label}; "
        f"loss {trace.loss:.4g}; {len(trace.entries)} entries, worst check "
        f"{trace.max_rel_error:.2g}",
    ]


def text(trace: Trace) -> str:
    lines = _header(trace)
    for entry in trace.entries:
        lines += [""] + _lines(entry)
    return "\n".join(lines) + "\n"


def markdown(trace: Trace) -> str:
    header = _header(trace)
    lines = [f"# {header[0]}", "", header[1], ""]
    lines += ["| layer | type | shapes | rule | check |", "| --- | --- | --- | --- | --- |"]
    for entry in trace.entries:
        lines.append(
            f"| `{entry.name}` | {entry.type} | {entry.shape_arithmetic} | {entry.rule} | "
            f"{_verdict(entry)} |"
        )
    return "\n".join(lines) + "\n"
