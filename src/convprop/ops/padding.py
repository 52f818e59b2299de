"""Padding: constant (zero) padding and cropping, reflect, replicate and circular borders.

Deck 004: a map that was zero-padded in the forward pass yields a derivative map "the size of
the zero-padded map", and "the zero padding regions must be deleted before further backprop".
That is the backward of ``constant`` padding: crop ``grad_out`` back to the input's region
(negative padding crops in the forward, so its backward puts zeros where the input was cut).

The other modes fill the border with copies of input samples; every padded sample is a copy
of exactly one input sample, so its gradient is added ("+=") onto the sample it copies:

* ``reflect``: out[j] = x[r(j - before)], r mirrors about the end samples without repeating
  them (-1 -> 1, n -> n - 2); needs before, after < n.
* ``replicate``: out[j] = x[clamp(j - before, 0, n - 1)]; a border's gradient is summed onto
  the end sample.
* ``circular``: the input (after cropping any negative side) is wrapped around: the left
  border copies its last ``before`` samples, the right border its first ``after``.

The ``pad`` tuple follows PyTorch: last dimension first, ``(left, right, top, bottom, front,
back)``. Each axis is padded in turn; the backward folds the axes back in reverse order, one
slice ``+=`` per border (no loop over samples).

Padding has one implementation, these slice copies and slice ``+=`` as written, which is its
own reference: ``convprop.ops.use_algorithm("reference")`` changes nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from convprop.ops.contract import Grads, Needs, OpPair

MODES = ("constant", "reflect", "replicate", "circular")

# One border (or the copied core) of one axis: out[out_slice] = x[in_slice], where the input
# slice has length 1 and is broadcast along the axis when ``replicated`` is True.
Region = tuple[slice, slice, bool]


def _parse_pad(pad: Any, ndim: int) -> tuple[int, ...]:
    if isinstance(pad, (str, bytes)) or not isinstance(pad, Sequence):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    values = tuple(pad)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    if len(values) % 2:
        raise ValueError(
            f"pad: padding length must be divisible by 2 (a before and an after amount per "
            f"dimension), got {len(values)} values {values}"
        )
    if len(values) // 2 > ndim:
        raise ValueError(
            f"pad: padding length {len(values)} pads {len(values) // 2} dimensions but the "
            f"input has only {ndim} (padding length must be <= 2 * input.dim())"
        )
    return tuple(int(v) for v in values)


def _axis_pads(pad: tuple[int, ...], ndim: int) -> list[tuple[int, int, int]]:
    """``(axis, before, after)`` for every padded axis, from PyTorch's last-dim-first order."""
    count = len(pad) // 2
    return [(ndim - 1 - k, pad[2 * k], pad[2 * k + 1]) for k in range(count)]


def _check_non_constant(
    x: np.ndarray, pad: tuple[int, ...], mode: str, value: float | None
) -> None:
    if value is not None and value != 0:
        raise ValueError(
            f"pad: padding mode {mode!r} does not take a value argument (it copies input "
            f"samples into the border), got value={value!r}"
        )
    spatial = len(pad) // 2
    if spatial not in (1, 2, 3) or x.ndim not in (spatial + 1, spatial + 2):
        raise ValueError(
            f"pad: mode {mode!r} pads the last 1, 2 or 3 dimensions of an unbatched or batched "
            f"input: a padding of length 2 needs a 2-D or 3-D input, 4 a 3-D or 4-D input, 6 a "
            f"4-D or 5-D input; got padding length {len(pad)} for a {x.ndim}-D input of shape "
            f"{tuple(x.shape)}"
        )
    if mode in ("reflect", "replicate"):
        first = 1 if x.ndim == spatial + 2 else 0
        if any(size == 0 for size in x.shape[first:]):
            raise ValueError(
                f"pad: mode {mode!r} needs non-empty dimensions (only the batch may be 0), got "
                f"input shape {tuple(x.shape)}"
            )


def _check_axis(
    mode: str, axis: int, size: int, before: int, after: int, shape: tuple[int, ...]
) -> None:
    out = size + before + after
    kept = size + min(before, 0) + min(after, 0)
    where = f"dimension {axis} (size {size}) of input shape {shape}"
    if mode == "constant":
        if kept < 0 or out < 0:
            raise ValueError(f"pad: padding ({before}, {after}) crops more than {where} holds")
        return
    if mode == "reflect" and (before >= size or after >= size):
        raise ValueError(
            f"pad: reflect padding must be smaller than the padded dimension, got padding "
            f"({before}, {after}) for {where}"
        )
    if mode in ("reflect", "replicate") and out < 0:
        raise ValueError(
            f"pad: padding ({before}, {after}) leaves a negative output size {out} for {where}"
        )
    if mode == "circular":
        if before > size or after > size:
            raise ValueError(
                f"pad: circular padding wraps around more than once: padding ({before}, "
                f"{after}) is larger than {where}"
            )
        if out < 0:
            raise ValueError(
                f"pad: negative circular padding ({before}, {after}) crops more than {where} holds"
            )
        if before > kept or after > kept:
            # PyTorch reads uninitialised memory here; refuse instead of returning garbage.
            raise ValueError(
                f"pad: circular padding ({before}, {after}) wraps the cropped dimension of size "
                f"{kept} more than once ({where})"
            )


def _axis_regions(mode: str, size: int, before: int, after: int) -> list[Region]:
    """Source of every part of one padded axis; the core (plain copy, maybe empty) comes first."""
    out = size + before + after
    core_start = max(before, 0)
    core_stop = max(min(out, size + before), core_start)
    regions: list[Region] = [
        (slice(core_start, core_stop), slice(core_start - before, core_stop - before), False)
    ]
    left = min(max(before, 0), out)
    right_start = max(size + before, 0)
    if mode == "constant":
        return regions
    if mode == "replicate":
        if left:
            regions.append((slice(0, left), slice(0, 1), True))
        if out > right_start:
            regions.append((slice(right_start, out), slice(size - 1, size), True))
        return regions
    if mode == "reflect":
        if left:
            # out[j] = x[before - j] for j < left: a reversed slice.
            regions.append((slice(0, left), slice(before, before - left, -1), False))
        if out > right_start:
            # out[j] = x[2 (n - 1) - (j - before)], again reversed.
            first = 2 * (size - 1) - (right_start - before)
            last = 2 * (size - 1) - (out - 1 - before)
            regions.append(
                (slice(right_start, out), slice(first, last - 1 if last > 0 else None, -1), False)
            )
        return regions
    # circular: wrap the cropped input x[lo:hi] around itself.
    lo, hi = max(-before, 0), size - max(-after, 0)
    if before > 0:
        regions.append((slice(0, before), slice(hi - before, hi), False))
    if after > 0:
        regions.append((slice(out - after, out), slice(lo, lo + after), False))
    return regions


def _axis_index(axis: int, part: slice) -> tuple[slice, ...]:
    return (slice(None),) * axis + (part,)


def pad_forward(
    x: np.ndarray, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> tuple[np.ndarray, Any]:
    """Pad (or, with negative amounts, crop) the trailing dimensions of ``x``."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"pad: mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}"
        )
    amounts = _parse_pad(pad, x.ndim)
    if mode != "constant":
        _check_non_constant(x, amounts, mode, value)
    axes = _axis_pads(amounts, x.ndim)
    for axis, before, after in axes:
        _check_axis(mode, axis, x.shape[axis], before, after, tuple(x.shape))
    out_sizes = [x.shape[axis] + before + after for axis, before, after in axes]
    if mode in ("reflect", "replicate") and not any(out_sizes):
        # PyTorch's rule: some padded dimension must keep at least one sample.
        raise ValueError(
            f"pad: padding {amounts} leaves no sample in any padded dimension of input shape "
            f"{tuple(x.shape)} (output sizes {tuple(reversed(out_sizes))})"
        )
    # Per padded axis: (axis, input length, output length, where each output part comes from).
    plan = [
        (
            axis,
            x.shape[axis],
            x.shape[axis] + before + after,
            _axis_regions(mode, x.shape[axis], before, after),
        )
        for axis, before, after in axes
    ]

    if mode == "constant":
        out_shape = list(x.shape)
        out_index: list[slice] = [slice(None)] * x.ndim
        in_index: list[slice] = [slice(None)] * x.ndim
        for axis, _, out_size, regions in plan:
            out_shape[axis] = out_size
            out_index[axis], in_index[axis], _ = regions[0]
        fill = 0 if value is None else value
        out = np.full(out_shape, fill, dtype=x.dtype)
        out[tuple(out_index)] = x[tuple(in_index)]
        return out, (mode, x.shape, plan, (tuple(out_index), tuple(in_index)))

    in_place = _borders_copy_the_core(plan)
    if in_place:
        # One output array: copy the input into its core, then fill each axis' borders from
        # the core already in place. Border positions of axes not yet filled receive garbage
        # first and are overwritten when their own axis is filled (full extent along the
        # others).
        shape = list(x.shape)
        core_out: list[slice] = [slice(None)] * x.ndim
        core_in: list[slice] = [slice(None)] * x.ndim
        for axis, _, out_size, regions in plan:
            shape[axis] = out_size
            core_out[axis], core_in[axis], _ = regions[0]
        out = np.empty(shape, dtype=x.dtype)
        out[tuple(core_out)] = x[tuple(core_in)]
        for axis, _, _, regions in plan:
            shift = _core_shift(regions)
            for out_part, in_part, _ in regions[1:]:
                out[_axis_index(axis, out_part)] = out[_axis_index(axis, _shifted(in_part, shift))]
        return out, (mode, x.shape, plan, in_place)

    # Reflect with the opposite side cropped mirrors samples that are not in the output:
    # pad one axis at a time from the input itself.
    out = x
    for axis, _, out_size, regions in plan:
        source = out
        shape = list(source.shape)
        shape[axis] = out_size
        # The regions cover the output axis exactly, so no fill is needed.
        out = np.empty(shape, dtype=x.dtype)
        for out_part, in_part, _ in regions:
            out[_axis_index(axis, out_part)] = source[_axis_index(axis, in_part)]
    return out, (mode, x.shape, plan, in_place)


def _core_shift(regions: list[Region]) -> int:
    """Offset of input sample i in the output (it sits at i + shift)."""
    core_out, core_in, _ = regions[0]
    return int(core_out.start - core_in.start)


def _shifted(part: slice, shift: int) -> slice:
    start = part.start + shift
    if part.step == -1:
        stop = (-1 if part.stop is None else part.stop) + shift
        return slice(start, stop if stop >= 0 else None, -1)
    return slice(start, part.stop + shift)


def _borders_copy_the_core(plan: list[tuple[int, int, int, list[Region]]]) -> bool:
    """Whether every border of every axis copies samples that lie in the output's core."""
    for _, size, _, regions in plan:
        core_in = regions[0][1]
        for _, in_part, _ in regions[1:]:
            samples = range(size)[in_part]
            if not (core_in.start <= min(samples) and max(samples) < core_in.stop):
                return False
    return True


def pad_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """Gradient of padding.

    constant: crop ``grad_out`` to the input's region (the notes' removal of the padding
    region); where negative padding cropped the input, the gradient is zero.
    reflect / replicate / circular: the gradient of every border sample is added ("+=") onto
    the input sample it copies, one slice per border and axis, axes folded in reverse order.
    """
    mode, input_shape, plan, extra = saved
    if mode == "constant":
        out_index, in_index = extra
        cropped = grad_out[out_index]
        if cropped.shape == tuple(input_shape):
            return (np.ascontiguousarray(cropped),)
        grad = np.zeros(input_shape, dtype=grad_out.dtype)
        grad[in_index] = cropped
        return (grad,)
    if extra:
        # Undo the in-place border fills in reverse: each border's gradient is added onto
        # the core samples it copied, then that axis is narrowed to its core, so axes folded
        # later never see the (already folded) borders of this one.
        grad = grad_out.copy()
        for axis, _, _, regions in reversed(plan):
            shift = _core_shift(regions)
            for out_part, in_part, replicated in regions[1:]:
                piece = grad[_axis_index(axis, out_part)]
                if replicated:
                    piece = piece.sum(axis=axis, keepdims=True)
                grad[_axis_index(axis, _shifted(in_part, shift))] += piece
            grad = grad[_axis_index(axis, regions[0][0])]
        if grad.shape == tuple(input_shape):
            return (np.ascontiguousarray(grad),)
        # Negative padding cut part of the input away: no gradient there.
        full = np.zeros(input_shape, dtype=grad_out.dtype)
        core_in: list[slice] = [slice(None)] * len(input_shape)
        for axis, _, _, regions in plan:
            core_in[axis] = regions[0][1]
        full[tuple(core_in)] = grad
        return (full,)
    grad = grad_out
    for axis, size, _, regions in reversed(plan):
        shape = list(grad.shape)
        shape[axis] = size
        folded = np.zeros(shape, dtype=grad_out.dtype)
        for out_part, in_part, replicated in regions:
            piece = grad[_axis_index(axis, out_part)]
            if replicated:
                piece = piece.sum(axis=axis, keepdims=True)
            folded[_axis_index(axis, in_part)] += piece
        grad = folded
    return (grad,)


pad = OpPair("pad", pad_forward, pad_backward)
