"""Layer cases: forward + backward of one op, convprop against PyTorch, float32.

Each case draws its input, weights and the incoming gradient dL/dy once; a call runs the
forward and ``backward(dL/dy)`` on both sides (gradients accumulate into ``.grad``, which
costs the same on both sides). FLOPs are counted analytically for the convolutions (a
multiply-add is 2 FLOPs): forward 2 N prod(O) F (C/g) prod(K); the input gradient and the
weight gradient cost the same again each, so forward+backward is 3x the forward (2x when the
input needs no gradient, as for a network's first layer). Pooling, batch norm and
cross-entropy are memory-bound: their FLOPs are not counted (no GFLOP/s figure).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import convprop as cp
import convprop.nn.functional as F

TF = torch.nn.functional

# What a case's setup returns: (ours, theirs, flops or None, images per call or None).
Setup = tuple[Callable[[], object], Callable[[], object], float | None, int | None]


@dataclass
class Case:
    name: str
    group: str
    setup: Callable[[], Setup]
    repeats: int = 9
    memory: bool = False


def _pair(array: np.ndarray, requires_grad: bool = True) -> tuple[cp.Tensor, torch.Tensor]:
    return (
        cp.tensor(array, requires_grad=requires_grad),
        torch.tensor(array, requires_grad=requires_grad),
    )


def _fwd_bwd(
    our_fn: Callable[[], cp.Tensor], their_fn: Callable[[], torch.Tensor], seed: int
) -> tuple[Callable[[], object], Callable[[], object]]:
    """Calls running forward then backward with the same random dL/dy on both sides."""
    shape = tuple(their_fn().shape)
    grad = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    our_grad, their_grad = cp.tensor(grad), torch.tensor(grad)

    def ours() -> None:
        our_fn().backward(our_grad)

    def theirs() -> None:
        their_fn().backward(their_grad)

    return ours, theirs


def conv_case(
    name: str,
    batch: int,
    in_channels: int,
    out_channels: int,
    size: int | tuple[int, ...],
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    input_grad: bool = True,
    bias: bool = False,
) -> Case:
    spatial = (size,) * 2 if isinstance(size, int) else size
    dims = len(spatial)
    ours_op = {1: F.conv1d, 2: F.conv2d}[dims]
    theirs_op = {1: TF.conv1d, 2: TF.conv2d}[dims]
    shape_text = "x".join(map(str, spatial))
    label = (
        f"{name}: conv{dims}d {in_channels}->{out_channels} k{kernel} s{stride} p{padding}"
        + (f" d{dilation}" if dilation != 1 else "")
        + (f" g{groups}" if groups != 1 else "")
        + f" {shape_text} b{batch}"
    )

    def setup() -> Setup:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, in_channels, *spatial), dtype=np.float32)
        w = rng.standard_normal(
            (out_channels, in_channels // groups, *(kernel,) * dims), dtype=np.float32
        )
        our_x, their_x = _pair(x, input_grad)
        our_w, their_w = _pair(w * np.float32(1 / math.sqrt(w[0].size)))
        our_b, their_b = _pair(np.zeros(out_channels, np.float32)) if bias else (None, None)
        args = (stride, padding, dilation, groups)
        ours, theirs = _fwd_bwd(
            lambda: ours_op(our_x, our_w, our_b, *args),
            lambda: theirs_op(their_x, their_w, their_b, *args),
            seed=1,
        )
        out_positions = math.prod(
            (s + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for s in spatial
        )
        forward = 2 * batch * out_positions * out_channels * in_channels // groups * kernel**dims
        return ours, theirs, forward * (3 if input_grad else 2), None

    return Case(label, "layer", setup)


def conv_transpose_case(
    batch: int,
    in_channels: int,
    out_channels: int,
    size: int,
    kernel: int,
    stride: int,
    padding: int,
) -> Case:
    label = (
        f"conv_transpose2d {in_channels}->{out_channels} k{kernel} s{stride} p{padding} "
        f"{size}x{size} b{batch}"
    )

    def setup() -> Setup:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, in_channels, size, size), dtype=np.float32)
        w = rng.standard_normal((in_channels, out_channels, kernel, kernel), dtype=np.float32)
        our_x, their_x = _pair(x)
        our_w, their_w = _pair(w * np.float32(1 / math.sqrt(w[0].size)))
        ours, theirs = _fwd_bwd(
            lambda: F.conv_transpose2d(our_x, our_w, None, stride, padding),
            lambda: TF.conv_transpose2d(their_x, their_w, None, stride, padding),
            seed=1,
        )
        # The adjoint convolution maps the output (out_channels) to x (in_channels) with one
        # multiply-add per input position, tap and channel pair.
        forward = 2 * batch * size * size * in_channels * out_channels * kernel * kernel
        return ours, theirs, 3 * forward, None

    return Case(label, "layer", setup)


def pool_case(kind: str, batch: int, channels: int, size: int, kernel: int, stride: int) -> Case:
    label = f"{kind} {kernel}x{kernel}/{stride} {channels}x{size}x{size} b{batch}"
    ours_op, theirs_op = getattr(F, kind), getattr(TF, kind)

    def setup() -> Setup:
        rng = np.random.default_rng(2)
        our_x, their_x = _pair(rng.standard_normal((batch, channels, size, size), dtype=np.float32))
        ours, theirs = _fwd_bwd(
            lambda: ours_op(our_x, kernel, stride), lambda: theirs_op(their_x, kernel, stride), 3
        )
        return ours, theirs, None, None

    return Case(label, "layer", setup)


def batch_norm_case(batch: int, channels: int, size: int) -> Case:
    label = f"batch_norm2d (train) {channels}x{size}x{size} b{batch}"

    def setup() -> Setup:
        rng = np.random.default_rng(4)
        our_x, their_x = _pair(rng.standard_normal((batch, channels, size, size), dtype=np.float32))
        our_w, their_w = _pair(np.ones(channels, np.float32))
        our_b, their_b = _pair(np.zeros(channels, np.float32))
        our_stats = [
            cp.tensor(np.zeros(channels, np.float32)),
            cp.tensor(np.ones(channels, np.float32)),
        ]
        their_stats = [torch.zeros(channels), torch.ones(channels)]
        ours, theirs = _fwd_bwd(
            lambda: F.batch_norm(our_x, *our_stats, our_w, our_b, True),
            lambda: TF.batch_norm(their_x, *their_stats, their_w, their_b, True),
            5,
        )
        return ours, theirs, None, None

    return Case(label, "layer", setup)


def cross_entropy_case(batch: int, classes: int) -> Case:
    label = f"cross_entropy {batch}x{classes}"

    def setup() -> Setup:
        rng = np.random.default_rng(6)
        our_x, their_x = _pair(rng.standard_normal((batch, classes), dtype=np.float32))
        labels = rng.integers(0, classes, batch)
        our_t, their_t = cp.tensor(labels), torch.tensor(labels)

        def ours() -> None:
            F.cross_entropy(our_x, our_t).backward()

        def theirs() -> None:
            TF.cross_entropy(their_x, their_t).backward()

        return ours, theirs, None, None

    return Case(label, "layer", setup, repeats=15)


def cases() -> list[Case]:
    return [
        conv_case("LeNet-5 conv1", 128, 1, 6, 28, 5, padding=2, input_grad=False, bias=True),
        conv_case("LeNet-5 conv2", 128, 6, 16, 14, 5, bias=True),
        conv_case("ResNet-20 conv1", 128, 3, 16, 32, 3, padding=1, input_grad=False),
        conv_case("ResNet-20 stage 1", 128, 16, 16, 32, 3, padding=1),
        conv_case("ResNet-20 stage 2 in", 128, 16, 32, 32, 3, stride=2, padding=1),
        conv_case("ResNet-20 stage 2", 128, 32, 32, 16, 3, padding=1),
        conv_case("ResNet-20 stage 3 in", 128, 32, 64, 16, 3, stride=2, padding=1),
        conv_case("ResNet-20 stage 3", 128, 64, 64, 8, 3, padding=1),
        conv_case("ResNet-20 projection 2", 128, 16, 32, 32, 1, stride=2),
        conv_case("ResNet-20 projection 3", 128, 32, 64, 16, 1, stride=2),
        conv_case("DenseNet-BC bottleneck", 64, 96, 48, 32, 1),
        conv_case("DenseNet-BC growth", 64, 48, 12, 32, 3, padding=1),
        conv_case("grouped", 64, 64, 64, 16, 3, padding=1, groups=4),
        conv_case("dilated", 128, 32, 32, 16, 3, padding=2, dilation=2),
        conv_transpose_case(64, 32, 16, 16, 4, 2, 1),
        conv_case("TDNN layer 1", 64, 40, 64, (200,), 5, bias=True),
        pool_case("max_pool2d", 128, 16, 32, 2, 2),
        pool_case("max_pool2d", 128, 16, 32, 3, 2),
        pool_case("avg_pool2d", 128, 16, 32, 2, 2),
        batch_norm_case(128, 32, 16),
        cross_entropy_case(128, 10),
        cross_entropy_case(512, 1000),
    ]
