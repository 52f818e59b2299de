"""``explain model``: one image through the user's own network, forward and backward, layer
by layer, in the notes' terms, every gradient checked.

:func:`trace` runs the network once on the image, with the cross-entropy against a label, and
keeps for every layer *call*, in forward order (a layer called twice appears twice): its input
and output maps, ``grad_output`` (the local gradient delta = dL/d(output) of the notes),
``grad_input`` (what this layer's backward hands down; where a value feeds several layers, as
a ResNet's shortcut does, each gets its own share, and the shares add up to the value's
gradient), and for layers with parameters ``grad_weight`` and ``grad_bias``. A layer is a
module without submodules; an op a container runs itself (a residual ``+``, DenseNet's
concatenation, a functional ReLU) is an entry of its own, named after the container
(``layer1.0.add``). The last entry is the softmax and cross-entropy of the logits.

A segmenter (a network whose scores are a map, (K, H, W) for K classes) is traced the same way
against a mask, an (H, W) array of class indices with ``IGNORE`` (255) at unlabelled pixels:
the loss is its training loss, the mean over the labelled pixels of the per-pixel
cross-entropy, so its gradient dL/ds is (p - onehot(mask)) / (labelled pixels) at each
labelled pixel and 0 at the ignored ones.

Each entry is verified in float64, on a copy of the network: against central finite
differences of the loss on a few randomly chosen entries of its ``grad_output`` (the layer's
output perturbed through ``convprop.autograd.perturb``), ``grad_weight`` and ``grad_bias``; and
by the chain rule: the shares ``grad_input`` of a value's consumers add up to the
``grad_output`` of the layer that made it. Where the loss has no derivative along a chosen
entry (its two one-sided difference quotients disagree and neither matches: kinks on both
sides, as when tied maxima of a flat background move apart), finite differences can neither
confirm nor refute it; the entry is counted as ``skipped`` and another is drawn.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import convprop as cp
from convprop import nn
from convprop.autograd import Tensor, TracedOp, no_grad, perturb
from convprop.autograd import trace as trace_ops
from convprop.data.canvases import IGNORE
from convprop.explain.trace_rules import (
    config_of,
    pixel_loss_rule,
    rule,
    shape_arithmetic,
    top_entries,
)
from convprop.nn import functional as F

# What the loss is taken against: a class (a classifier's), or a mask of class indices with
# IGNORE at unlabelled pixels (a segmenter's, the shape of its score map without the classes).
Target = int | np.ndarray


def _cross_entropy(scores: Tensor, target: Target) -> Tensor:
    """The training loss: the cross-entropy of the image's scores against its target (for a
    mask, the mean over its labelled pixels)."""
    if isinstance(target, np.ndarray):
        return F.cross_entropy(scores, cp.tensor(target[np.newaxis]), ignore_index=IGNORE)
    return F.cross_entropy(scores, cp.tensor(np.array([target])))


@dataclass
class LayerEntry:
    """One layer call (or op of a container) of the traced forward and backward pass; arrays
    without the batch axis."""

    name: str
    type: str
    config: dict[str, Any]
    shape_arithmetic: str
    rule: str
    input: Any  # an array, or one per input (add, cat)
    output: np.ndarray
    grad_output: np.ndarray
    grad_input: Any
    grad_weight: np.ndarray | None = None
    grad_bias: np.ndarray | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    check: dict[str, float] = field(default_factory=dict)
    sources: list[int] = field(default_factory=list)  # entries whose outputs it reads (-1: x)

    def to_dict(self) -> dict[str, Any]:
        def listed(array: Any) -> Any:
            if array is None:
                return None
            if isinstance(array, list):  # one array per input
                return [np.asarray(a, np.float64).tolist() for a in array]
            return np.asarray(array, np.float64).tolist()

        return {
            "name": self.name,
            "type": self.type,
            "config": self.config,
            "shape_arithmetic": self.shape_arithmetic,
            "input": listed(self.input),
            "output": listed(self.output),
            "grad_output": listed(self.grad_output),
            "grad_input": listed(self.grad_input),
            "grad_weight": listed(self.grad_weight),
            "grad_bias": listed(self.grad_bias),
            "rule": self.rule,
            "check": {
                "max_rel_error": float(self.check.get("max_rel_error", 0.0)),
                "entries": int(self.check.get("entries", 0)),
            },
        }


# ----------------------------------------------------------------------------- one pass
@dataclass
class _Call:
    name: str
    type: str
    module: nn.Module | None
    first_op: int
    last_op: int
    inputs: list[Tensor]  # what the layer read (its own copies, for a module)
    sources: list[Tensor]  # the tensors those were
    output: Tensor
    op: TracedOp | None = None  # for an op of a container
    output_op: int | None = None  # the index of the op that made ``output``


@dataclass
class _Pass:
    x: Tensor
    logits: Tensor
    loss: Tensor
    calls: list[_Call]
    ops: list[TracedOp]
    copies: set[int] = field(default_factory=set)  # ids of the layers' input copies

    def plain_index(self, op_index: int) -> int:
        """The op's index in a pass without the hooks (which add one copy per layer input)."""
        return op_index - sum(1 for op in self.ops[:op_index] if id(op.output) in self.copies)


@contextmanager
def _hooks(
    model: nn.Module, ops: list[TracedOp], calls: list[_Call], windows: list[tuple[int, int, str]]
) -> Iterator[set[int]]:
    """Note every layer call and every container's span of ops. Each layer gets its own copy
    of each input: the copy's gradient is this layer's share of the input's gradient."""
    copies: set[int] = set()  # ids of the copies' outputs (not ops of the network)
    open_calls: dict[int, list[tuple[int, list[Tensor], list[Tensor]]]] = {}
    handles = []
    for name, module in model.named_modules():
        leaf = next(module.children(), None) is None

        def enter(
            module: nn.Module, args: tuple[Any, ...], name: str = name, leaf: bool = leaf
        ) -> Any:
            if not leaf:
                open_calls.setdefault(id(module), []).append((len(ops), [], []))
                return None
            own, sources, replaced = [], [], []
            for arg in args:
                if isinstance(arg, Tensor):
                    clone = arg.clone()
                    if clone.requires_grad:
                        clone.retain_grad()
                    copies.add(id(clone))
                    own.append(clone)
                    sources.append(arg)
                    replaced.append(clone)
                else:
                    replaced.append(arg)
            open_calls.setdefault(id(module), []).append((len(ops), own, sources))
            return tuple(replaced)

        def leave(
            module: nn.Module, args: Any, output: Any, name: str = name, leaf: bool = leaf
        ) -> None:
            first, own, sources = open_calls[id(module)].pop()
            label = name or type(module).__name__
            if not leaf:
                windows.append((first, len(ops) - 1, name))  # the whole model: ""
            elif isinstance(output, Tensor):
                if output.requires_grad:
                    output.retain_grad()
                calls.append(
                    _Call(
                        label,
                        type(module).__name__,
                        module,
                        first,
                        len(ops) - 1,
                        own,
                        sources,
                        output,
                    )
                )

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        yield copies
    finally:
        for handle in handles:
            handle.remove()


def _forward(model: nn.Module, image: np.ndarray, label: Target, backward: bool = True) -> _Pass:
    """One forward pass of ``model`` with its layers and ops noted, the loss, and (unless not
    ``backward``) its backward, the graph kept for the layers' shares."""
    x = cp.tensor(image[np.newaxis], requires_grad=backward)
    calls: list[_Call] = []
    windows: list[tuple[int, int, str]] = []
    with trace_ops() as ops, _hooks(model, ops, calls, windows) as copies:
        logits = model(x)
    loss = _cross_entropy(logits, label)
    covered = {i for call in calls for i in range(call.first_op, call.last_op + 1)}
    counts: dict[str, int] = {}
    for index, op in enumerate(ops):
        if index in covered or id(op.output) in copies:
            continue
        if backward and not op.output.requires_grad:
            continue
        inside = [(last - first, label) for first, last, label in windows if first <= index <= last]
        container = min(inside)[1] if inside else ""
        base = f"{container}.{op.name}" if container else op.name
        counts[base] = counts.get(base, 0) + 1
        if op.output.requires_grad:
            op.output.retain_grad()
        sources = [t for t in op.inputs if t is not None]
        calls.append(
            _Call(
                base if counts[base] == 1 else f"{base}_{counts[base]}",
                op.name,
                None,
                index,
                index,
                sources,
                sources,
                op.output,
                op,
                index,
            )
        )
    for call in calls:
        if call.op is None:  # a layer: the last op whose result is its output
            made = [i for i in range(call.last_op, -1, -1) if ops[i].output is call.output]
            call.output_op = made[0] if made else None
    calls.sort(key=lambda call: call.first_op)
    if backward:
        loss.backward(retain_graph=True)
    return _Pass(x, logits, loss, calls, ops, copies)


def _shares(call: _Call) -> list[np.ndarray | None]:
    """What this call's backward handed each of its inputs."""
    if call.op is None:
        return [t.grad.numpy() if t.grad is not None else None for t in call.inputs]
    node = call.output.grad_fn
    if node is None or node.backward_fn is None or call.output.grad is None:
        return [None] * len(call.inputs)
    grads = node.backward_fn(call.output.grad.numpy(), node.needs_input_grad)
    present = [g for t, g in zip(call.op.inputs, grads, strict=True) if t is not None]
    return [None if g is None else np.asarray(g) for g in present]


# ----------------------------------------------------------------------------- the trace
class Trace:
    """The layers of one image's forward and backward pass (see the module docstring).

    For a classifier ``probabilities`` is the softmax (K,) and ``label`` a class; for a
    segmenter ``probabilities`` is the per-pixel softmax (K, H, W) and ``label`` the (H, W)
    mask (``IGNORE`` at unlabelled pixels). ``classes`` names the classes where known.
    """

    def __init__(
        self,
        entries: list[LayerEntry],
        probabilities: np.ndarray,
        label: Target,
        loss: float,
        run: str = "",
        image: str = "",
        classes: list[str] | None = None,
    ) -> None:
        self.entries, self.probabilities, self.label, self.loss = (
            entries,
            probabilities,
            label,
            loss,
        )
        self.run, self.image = run, image
        self.classes = classes

    @property
    def task(self) -> str:
        """``"segment"`` for a network scoring every pixel, else ``"classify"``."""
        return "segment" if self.probabilities.ndim > 1 else "classify"

    @property
    def prediction(self) -> int | np.ndarray:
        """The predicted class; for a segmenter the predicted mask (the class of largest
        probability at each pixel)."""
        if self.task == "segment":
            return np.argmax(self.probabilities, axis=0)
        return int(np.argmax(self.probabilities))

    @property
    def labelled_pixels(self) -> int:
        """How many pixels the loss averages over (a segmenter's; 1 for a classifier)."""
        if self.task == "segment":
            return int(np.count_nonzero(np.asarray(self.label) != IGNORE))
        return 1

    @property
    def max_rel_error(self) -> float:
        return max((e.check.get("max_rel_error", 0.0) for e in self.entries), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (docs/explain-model.md); a segmenter's label, prediction and
        probabilities are nested lists (H, W), (H, W) and (K, H, W)."""
        if self.task == "segment":
            label: Any = np.asarray(self.label).astype(int).tolist()
            prediction: Any = np.asarray(self.prediction).astype(int).tolist()
            probabilities = np.asarray(self.probabilities, np.float64).tolist()
        else:
            label, prediction = int(self.label), self.prediction
            probabilities = [float(p) for p in self.probabilities]
        return {
            "run": self.run,
            "image": self.image,
            "task": self.task,
            "label": label,
            "prediction": prediction,
            "probabilities": probabilities,
            "loss": float(self.loss),
            "layers": [entry.to_dict() for entry in self.entries],
        }

    def render(self, format: str = "text") -> str:
        from convprop.explain import trace_text

        if format == "json":
            return json.dumps(self.to_dict()) + "\n"
        if format == "markdown":
            return trace_text.markdown(self)
        if format == "text":
            return trace_text.text(self)
        raise ValueError(f"explain model: format must be text, markdown or json, got {format!r}")

    def html(self) -> str:
        """The self-contained interactive page (``convprop.explain.page``)."""
        from convprop.explain.page import html as page_html

        return page_html(self)

    def figure(self, path: str | Path) -> Path:
        """A PNG of the maps, a row per layer (``convprop.explain.trace_figure``)."""
        from convprop.explain.trace_figure import write

        return write(self, Path(path))

    def __str__(self) -> str:
        return self.render("text")

    def _repr_markdown_(self) -> str:
        return self.render("markdown")

    def _repr_html_(self) -> str:
        return self.html()


def _entries(passed: _Pass) -> list[LayerEntry]:
    producers = {id(call.output): i for i, call in enumerate(passed.calls)}
    entries = []
    for call in passed.calls:
        shares = _shares(call)
        first = call.inputs[0] if call.inputs else None
        module = call.module
        weight = getattr(module, "weight", None) if module is not None else None
        bias = getattr(module, "bias", None) if module is not None else None
        input_shape = first.shape if first is not None else ()
        input_shapes = [t.shape for t in call.inputs]
        entries.append(
            LayerEntry(
                name=call.name,
                type=call.type,
                config=config_of(module),
                shape_arithmetic=shape_arithmetic(
                    call.type, module, input_shape, call.output.shape, input_shapes
                ),
                rule=rule(
                    call.type,
                    module,
                    input_shape,
                    call.output.shape,
                    len(call.inputs),
                    input_shapes,
                ),
                input=_per_input([t.numpy()[0] for t in call.inputs]),
                output=call.output.numpy()[0],
                grad_output=_grad(call.output)[0],
                grad_input=_per_input(
                    [
                        s[0] if s is not None else np.zeros(t.shape[1:])
                        for s, t in zip(shares, call.inputs, strict=True)
                    ]
                ),
                grad_weight=_grad(weight) if isinstance(weight, Tensor) else None,
                grad_bias=_grad(bias) if isinstance(bias, Tensor) else None,
                weight=weight.numpy() if isinstance(weight, Tensor) else None,
                bias=bias.numpy() if isinstance(bias, Tensor) else None,
                sources=[producers.get(id(t), -1) for t in call.sources],
            )
        )
    return entries


def _per_input(arrays: list[np.ndarray]) -> Any:
    """One input's array, or a list of them for an entry of several inputs (add, cat)."""
    if not arrays:
        return np.zeros(0)
    return arrays[0] if len(arrays) == 1 else arrays


def _grad(tensor: Tensor) -> np.ndarray:
    return tensor.grad.numpy() if tensor.grad is not None else np.zeros(tensor.shape, tensor.dtype)


def _loss_entry(passed: _Pass, label: Target) -> LayerEntry:
    logits = passed.logits.numpy()[0]
    if isinstance(label, np.ndarray):
        labelled = int(np.count_nonzero(label != IGNORE))
        pixels = "x".join(str(size) for size in label.shape)
        config: dict[str, Any] = {"ignore_index": IGNORE, "labelled_pixels": labelled}
        arithmetic = (
            f"{logits.shape[0]} scores at each of {pixels} pixels -> 1 loss "
            f"(the mean over {labelled} labelled pixels)"
        )
        loss_rule = pixel_loss_rule(labelled, label.size - labelled)
    else:
        config = {"label": int(label)}
        arithmetic = f"{logits.shape[0]} logits -> 1 loss"
        loss_rule = rule("loss", None, (), ())
    return LayerEntry(
        name="loss",
        type="loss",
        config=config,
        shape_arithmetic=arithmetic,
        rule=loss_rule,
        input=logits,
        output=np.array([float(passed.loss.item())]),
        grad_output=np.array([1.0]),
        grad_input=_grad(passed.logits)[0],
    )


# ----------------------------------------------------------------------------- checks
_STEP = 1e-6
AGREEMENT = 1e-3  # a relative error below this is a check passed
# A one-sided difference quotient on the smooth side of a kink has the analytic slope to
# within rounding and the step's curvature, far below this (relative, as ``_relative``).
_SAME_SLOPE = 1e-4
# An entry with no derivative (``_quotient``) is replaced by another random one, at most this
# many times per requested check.
_REPLACEMENTS = 2


def _bend(rise: np.ndarray, fall: np.ndarray, here: np.ndarray) -> float:
    """How much of the loss's change comes from terms whose slope differs between the two
    steps: a smooth term rises by what it falls (up to the step's curvature, about 1e-6 of
    its change), a term past a kink does not; a term whose change is near its own rounding
    says nothing either way."""
    change = np.maximum(np.abs(rise), np.abs(fall))
    resolved = change > 64 * np.finfo(np.float64).eps * np.abs(here)
    asymmetry = np.abs(rise - fall)
    return float(asymmetry[resolved & (asymmetry > 1e-2 * change)].sum())


def _quotient(
    above: np.ndarray,
    here: np.ndarray,
    below: np.ndarray,
    step: float,
    analytic: float,
    scale: float,
) -> float | None:
    """The central difference quotient of the loss, from its terms (``_loss_terms``) at the
    three points, differenced term by term. Where the two one-sided quotients disagree, or
    any term bends between them, the step crossed a kink (a ReLU's or a max's): if one side's
    quotient has the analytic slope, the kink was on the other side and that one is used; if
    neither has, the loss has no derivative along this entry (kinks on both sides, as where
    tied maxima of a flat region move apart), finite differences can neither confirm nor
    refute the analytic value, and the answer is None. Looking at the terms matters for a
    segmenter: the one-sided quotients are sums over hundreds of pixels, whose kinks can
    cancel in the sums and leave both equally wrong."""
    rise, fall = above - here, here - below
    forward, backward = float(np.sum(rise)) / step, float(np.sum(fall)) / step
    bent = _bend(rise, fall, here) / step
    if _relative(forward, backward, scale) <= AGREEMENT and bent <= _SAME_SLOPE * max(
        abs(forward), abs(backward), 1e-2 * scale
    ):
        return float(np.sum(above - below)) / (2 * step)
    closer = min((forward, backward), key=lambda q: abs(q - analytic))
    return closer if _relative(closer, analytic, scale) <= _SAME_SLOPE else None


def _relative(a: float, b: float, scale: float) -> float:
    """|a - b| relative to the larger, or to 1% of the layer's largest gradient for entries
    smaller than that (where a difference quotient's rounding would dominate)."""
    return abs(a - b) / max(abs(a), abs(b), 1e-2 * scale, 1e-30)


def _loss_terms(model: nn.Module, image: np.ndarray, label: Target) -> np.ndarray:
    """The loss of a plain forward pass (no hooks: ``_Pass.plain_index`` maps op indices) as
    terms that add up to it: the loss itself for a class; for a mask each pixel's
    cross-entropy divided by the number of labelled pixels (0 at the ignored ones). A
    perturbation changes only the pixels it reaches, so differencing the terms pixel by pixel
    leaves the others' rounding out of the difference quotient: a segmenter's loss, a mean
    over thousands of pixels, moves by little more than its rounding otherwise."""
    with no_grad():
        logits = model(cp.tensor(image[np.newaxis]))
        if not isinstance(label, np.ndarray):
            return np.array([_cross_entropy(logits, label).item()])
        pixels = F.cross_entropy(
            logits, cp.tensor(label[np.newaxis]), ignore_index=IGNORE, reduction="none"
        )
        return pixels.numpy()[0] / np.count_nonzero(label != IGNORE)


def _check(
    model: nn.Module, image: np.ndarray, label: Target, checks: int, seed: int
) -> tuple[list[dict[str, float]], _Pass]:
    """Finite differences and the chain rule, per entry, on a float64 copy."""
    exact = copy.deepcopy(model).double().eval()
    image64 = image.astype(np.float64)
    passed = _forward(exact, image64, label)
    here = _loss_terms(exact, image64, label)
    rng = np.random.default_rng(seed)
    results: list[dict[str, Any]] = []
    for call in passed.calls:
        errors: list[float] = []
        skipped = 0
        if call.output_op is not None:
            index = passed.plain_index(call.output_op)
            if id(call.output) in passed.copies:  # a layer returning its input unchanged
                index = passed.plain_index(call.output_op + 1) - 1
            found, missed = _fd_output(exact, image64, label, call, index, checks, rng, here)
            errors, skipped = errors + found, skipped + missed
        found, missed = _fd_parameters(exact, image64, label, call, 1, rng, here)
        results.append({"errors": errors + found, "skipped": skipped + missed})
    _chain(passed, results)
    return [
        {
            "max_rel_error": max(r["errors"], default=0.0),
            "entries": len(r["errors"]),
            "skipped": r["skipped"],
        }
        for r in results
    ], passed


def _sample(
    candidates: np.ndarray,
    checks: int,
    rng: np.random.Generator,
    error_at: Callable[[int], float | None],
) -> tuple[list[float], int]:
    """The errors at ``checks`` random candidates, and how many candidates had no derivative
    (``error_at`` None), each replaced by another random one while replacements last."""
    chosen = [
        int(i) for i in rng.choice(candidates, size=min(checks, len(candidates)), replace=False)
    ]
    tried, errors, skipped = set(chosen), [], 0
    while chosen:
        error = error_at(chosen.pop(0))
        if error is not None:
            errors.append(error)
            continue
        skipped += 1
        if skipped <= _REPLACEMENTS * checks and len(tried) < len(candidates):
            remaining = np.setdiff1d(candidates, np.fromiter(tried, np.int64))
            replacement = int(rng.choice(remaining))
            tried.add(replacement)
            chosen.append(replacement)
    return errors, skipped


def _fd_output(
    model: nn.Module,
    image: np.ndarray,
    label: Target,
    call: _Call,
    op_index: int,
    checks: int,
    rng: np.random.Generator,
    here: np.ndarray,
) -> tuple[list[float], int]:
    analytic = call.output.grad.numpy() if call.output.grad is not None else None
    if analytic is None or not analytic.size:
        return [], 0
    scale = float(np.abs(analytic).max())
    candidates = (
        np.flatnonzero(np.abs(analytic.ravel()) >= 1e-3 * scale)
        if scale
        else np.arange(analytic.size)
    )
    values = call.output.numpy().ravel()

    def error_at(flat: int) -> float | None:
        step = _STEP * max(1.0, abs(float(values[flat])))
        with perturb(op_index, flat, step):
            above = _loss_terms(model, image, label)
        with perturb(op_index, flat, -step):
            below = _loss_terms(model, image, label)
        exact = float(analytic.ravel()[flat])
        quotient = _quotient(above, here, below, step, exact, scale)
        return None if quotient is None else _relative(quotient, exact, scale)

    return _sample(candidates, checks, rng, error_at)


def _fd_parameters(
    model: nn.Module,
    image: np.ndarray,
    label: Target,
    call: _Call,
    checks: int,
    rng: np.random.Generator,
    here: np.ndarray,
) -> tuple[list[float], int]:
    errors: list[float] = []
    skipped = 0
    if call.module is None:
        return errors, skipped
    for name in ("weight", "bias"):
        parameter = getattr(call.module, name, None)
        if not isinstance(parameter, Tensor) or parameter.grad is None:
            continue
        analytic = parameter.grad.numpy().ravel()
        scale = float(np.abs(analytic).max())
        values = parameter.data.reshape(-1)  # a view: the parameter itself moves

        def error_at(
            flat: int,
            values: np.ndarray = values,
            analytic: np.ndarray = analytic,
            scale: float = scale,
        ) -> float | None:
            original = float(values[flat])
            step = _STEP * max(1.0, abs(original))
            losses = []
            for delta in (step, -step):
                values[flat] = original + delta
                losses.append(_loss_terms(model, image, label))
            values[flat] = original
            exact = float(analytic[flat])
            quotient = _quotient(losses[0], here, losses[1], step, exact, scale)
            return None if quotient is None else _relative(quotient, exact, scale)

        found, missed = _sample(np.arange(analytic.size), checks, rng, error_at)
        errors, skipped = errors + found, skipped + missed
    return errors, skipped


def _chain(passed: _Pass, results: list[dict[str, Any]]) -> None:
    """The chain rule at every value: its consumers' shares add up to its gradient."""
    consumers: dict[int, list[tuple[int, int]]] = {}
    for i, call in enumerate(passed.calls):
        for j, source in enumerate(call.sources):
            consumers.setdefault(id(source), []).append((i, j))
    values = {id(call.output): (i, call.output) for i, call in enumerate(passed.calls)}
    shares = [_shares(call) for call in passed.calls]
    for key, users in consumers.items():
        if key not in values:
            continue
        _, tensor = values[key]
        if tensor.grad is None:
            continue
        total = tensor.grad.numpy()
        added = np.zeros_like(total)
        for i, j in users:
            share = shares[i][j]
            if share is not None:
                added = added + share
        scale = float(np.abs(total).max()) or 1.0
        error = float(np.abs(added - total).max()) / scale
        for i, _ in users:
            results[i]["errors"].append(error)


# ----------------------------------------------------------------------------- entry point
def _target(scores: np.ndarray, label: int | np.ndarray | None) -> Target:
    """What the loss is taken against, for a pass whose scores are ``scores`` (1, K) or
    (1, K, *spatial): ``label`` checked against them, or by default the prediction."""
    classes = scores.shape[1]
    if scores.ndim == 2:
        if label is None:
            return int(np.argmax(scores[0]))
        if np.ndim(label) != 0 or not np.issubdtype(np.asarray(label).dtype, np.integer):
            raise ValueError(
                f"trace: the network gives one score per class ({classes} classes); label "
                f"must be a class index, got {type(label).__name__} of shape {np.shape(label)}"
            )
        if not 0 <= int(label) < classes:
            raise ValueError(f"trace: label {int(label)} is not a class 0..{classes - 1}")
        return int(label)
    spatial = scores.shape[2:]
    if label is None:
        return np.argmax(scores[0], axis=0).astype(np.int64)
    mask = np.asarray(label)
    if mask.ndim == 0:
        raise ValueError(
            f"trace: the network scores every pixel ({classes} classes on "
            f"{'x'.join(map(str, spatial))}); label must be a mask of shape {spatial} "
            f"(class indices, {IGNORE} to ignore a pixel), not the one class {label!r}"
        )
    if mask.shape != spatial:
        raise ValueError(
            f"trace: the mask has shape {mask.shape} but the network's score map is {spatial}"
        )
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"trace: the mask must hold class indices (integers), got {mask.dtype}")
    outside = (mask != IGNORE) & ((mask < 0) | (mask >= classes))
    if outside.any():
        raise ValueError(
            f"trace: the mask has class {int(mask[outside][0])}, outside 0..{classes - 1} "
            f"(and {IGNORE} to ignore a pixel)"
        )
    if not (mask != IGNORE).any():
        raise ValueError(
            f"trace: every pixel of the mask is {IGNORE} (ignored): the loss would average "
            "over no pixel"
        )
    return mask.astype(np.int64)


def trace(
    model: nn.Module,
    image: np.ndarray,
    label: int | np.ndarray | None = None,
    *,
    checks: int = 2,
    seed: int = 0,
    run: str = "",
    name: str = "",
    classes: list[str] | None = None,
) -> Trace:
    """The forward and backward pass of ``model`` on one ``image`` (C, H, W) or (C, L), already
    normalised as the network expects, with the cross-entropy against ``label`` (default: the
    predicted class); ``checks`` finite differences per layer and parameter.

    For a segmenter (scores (K, H, W)) ``label`` is an (H, W) mask of class indices, ``IGNORE``
    (255) at pixels the loss leaves out (default: the predicted mask), and the loss is the mean
    per-pixel cross-entropy over the labelled pixels, as in training. ``classes`` names the
    classes for the text and the page."""
    model.eval()
    image = np.asarray(image, dtype=next(iter(model.parameters())).dtype)
    with no_grad():
        scores = model(cp.tensor(image[np.newaxis])).numpy()
    target = _target(scores, label)
    passed = _forward(model, image, target)
    entries = _entries(passed) + [_loss_entry(passed, target)]
    model.zero_grad()
    checked, _ = _check(model, image, target, checks, seed)
    for entry, result in zip(entries, checked, strict=False):
        entry.check = result
    logits = passed.logits.numpy()[0].astype(np.float64)
    probabilities = np.exp(logits - logits.max(axis=0, keepdims=True))
    probabilities /= probabilities.sum(axis=0, keepdims=True)
    loss_entry = entries[-1]
    loss_entry.check = _loss_check(loss_entry, probabilities, target)
    return Trace(entries, probabilities, target, float(passed.loss.item()), run, name, classes)


def loss_gradient(probabilities: np.ndarray, label: Target) -> np.ndarray:
    """The notes' dL/ds: p - onehot(label); for a mask, (p - onehot(mask)) / N at each of the
    N labelled pixels and 0 at the ignored ones (the mean's gradient)."""
    expected = np.array(probabilities, dtype=np.float64)
    if not isinstance(label, np.ndarray):
        expected[label] -= 1.0
        return expected
    labelled = label != IGNORE
    expected[(label[labelled], *np.nonzero(labelled))] -= 1.0
    expected[:, ~labelled] = 0.0
    return expected / np.count_nonzero(labelled)


def _loss_check(entry: LayerEntry, probabilities: np.ndarray, label: Target) -> dict[str, float]:
    """dL/ds of the backward pass against the notes' rule (``loss_gradient``)."""
    expected = loss_gradient(probabilities, label)
    scale = float(np.abs(expected).max())
    error = float(np.abs(entry.grad_input - expected).max()) / scale
    return {"max_rel_error": error, "entries": int(expected.size)}


__all__ = ["LayerEntry", "Target", "Trace", "loss_gradient", "top_entries", "trace"]
