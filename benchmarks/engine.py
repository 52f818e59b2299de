"""The engine's first benchmark: forward+backward of conv2d, max_pool2d, the README's small
network and a LeNet-5 training step, convprop against PyTorch CPU, float32."""

from __future__ import annotations

import numpy as np
import torch

import convprop as cp
import convprop.nn.functional as F
from benchmarks.harness import Timing, compare
from convprop import models, optim


def _pair(array: np.ndarray) -> tuple[cp.Tensor, torch.Tensor]:
    return cp.tensor(array, requires_grad=True), torch.tensor(array, requires_grad=True)


def conv2d_case(
    batch: int, in_channels: int, out_channels: int, size: int, stride: int = 1
) -> Timing:
    rng = np.random.default_rng(0)
    our_x, their_x = _pair(rng.standard_normal((batch, in_channels, size, size), dtype=np.float32))
    our_w, their_w = _pair(rng.standard_normal((out_channels, in_channels, 3, 3), dtype=np.float32))
    our_b, their_b = _pair(rng.standard_normal(out_channels, dtype=np.float32))

    def ours() -> None:
        F.conv2d(our_x, our_w, our_b, stride, 1).sum().backward()

    def theirs() -> None:
        torch.nn.functional.conv2d(their_x, their_w, their_b, stride, 1).sum().backward()

    return compare(
        f"conv2d {in_channels}->{out_channels} {size}x{size} s{stride} b{batch} fwd+bwd",
        ours,
        theirs,
    )


def max_pool_case(batch: int, channels: int, size: int, kernel: int, stride: int) -> Timing:
    rng = np.random.default_rng(1)
    our_x, their_x = _pair(rng.standard_normal((batch, channels, size, size), dtype=np.float32))

    def ours() -> None:
        F.max_pool2d(our_x, kernel, stride).sum().backward()

    def theirs() -> None:
        torch.nn.functional.max_pool2d(their_x, kernel, stride).sum().backward()

    return compare(
        f"max_pool2d {kernel}x{kernel}/{stride} {channels}x{size}x{size} b{batch} fwd+bwd",
        ours,
        theirs,
    )


def small_network_case() -> Timing:
    """The README's example: conv - relu - max pool - flatten - matmul - cross-entropy."""
    rng = np.random.default_rng(2)
    our_x, their_x = _pair(rng.standard_normal((8, 3, 32, 32), dtype=np.float32))
    our_w, their_w = _pair(rng.standard_normal((16, 3, 3, 3), dtype=np.float32))
    our_fc, their_fc = _pair(rng.standard_normal((4096, 10), dtype=np.float32))
    labels = np.arange(8) % 10
    our_t, their_t = cp.tensor(labels), torch.tensor(labels)

    def ours() -> None:
        y = F.max_pool2d(F.relu(F.conv2d(our_x, our_w, None, 1, 1)), 2)
        F.cross_entropy(y.flatten(1) @ our_fc, our_t).backward()

    def theirs() -> None:
        tf = torch.nn.functional
        y = tf.max_pool2d(tf.relu(tf.conv2d(their_x, their_w, None, 1, 1)), 2)
        tf.cross_entropy(y.flatten(1) @ their_fc, their_t).backward()

    return compare("README network (8x3x32x32) fwd+bwd", ours, theirs, repeats=15)


def lenet_step_case(batch: int = 128) -> Timing:
    cp.manual_seed(0)
    ours_model = models.lenet5()
    theirs_model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(400, 120),
        torch.nn.ReLU(),
        torch.nn.Linear(120, 84),
        torch.nn.ReLU(),
        torch.nn.Linear(84, 10),
    )
    our_opt = optim.SGD(ours_model.parameters(), lr=0.01, momentum=0.9)
    their_opt = torch.optim.SGD(theirs_model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(3)
    images = rng.random((batch, 1, 28, 28), dtype=np.float32)
    labels = np.arange(batch) % 10
    our_x, our_t = cp.tensor(images), cp.tensor(labels)
    their_x, their_t = torch.tensor(images), torch.tensor(labels)

    def ours() -> None:
        our_opt.zero_grad()
        F.cross_entropy(ours_model(our_x), our_t).backward()
        our_opt.step()

    def theirs() -> None:
        their_opt.zero_grad()
        torch.nn.functional.cross_entropy(theirs_model(their_x), their_t).backward()
        their_opt.step()

    return compare(f"LeNet-5 training step b{batch}", ours, theirs, repeats=15)


def run() -> list[Timing]:
    return [
        conv2d_case(64, 3, 16, 32),
        conv2d_case(64, 16, 16, 32),
        conv2d_case(64, 16, 32, 32, stride=2),
        max_pool_case(64, 16, 32, 2, 2),
        max_pool_case(64, 16, 32, 3, 2),
        small_network_case(),
        lenet_step_case(),
    ]
