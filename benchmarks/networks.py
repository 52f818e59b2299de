"""Whole-network cases: training steps and inference throughput, convprop against PyTorch.

The PyTorch side is the zoo's torch mirror of each model (``tests/models/test_zoo.py``), loaded
with convprop's initial weights so both sides train the same network from the same point. A
training step is ``zero_grad``, forward, cross-entropy, backward and an SGD-momentum update.
Inference runs in eval mode without recording the graph (``no_grad``).

FLOPs are counted analytically from the layers' output shapes (recorded by forward hooks on
the torch mirror): each convolution or linear layer does 2 (C/g) prod(K) FLOPs per output
element forward; a training step adds the input gradient and the weight gradient at the same
cost each (only the weight gradient for a layer whose input needs no gradient, the first one).
Batch norm, pooling, activations and the loss are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import convprop as cp
import convprop.nn.functional as F
from benchmarks.layers import Case, Setup
from convprop import models, optim
from tests.models.mirrors import (
    TorchCifarResNet,
    TorchDenseNetBC,
    TorchLeNet5,
    TorchTDNN,
    copy_into_torch,
)

NETWORKS: dict[str, tuple[Callable[[], Any], Callable[[], torch.nn.Module], tuple[int, ...]]] = {
    "LeNet-5": (models.lenet5, TorchLeNet5, (1, 28, 28)),
    "ResNet-20": (models.resnet20, lambda: TorchCifarResNet(3), (3, 32, 32)),
    "DenseNet-BC": (models.densenet_bc, TorchDenseNetBC, (3, 32, 32)),
    "TDNN": (models.tdnn, TorchTDNN, (40, 200)),
}


def count_flops(model: torch.nn.Module, x: torch.Tensor, training: bool) -> float:
    """Analytic FLOPs of the convolutions and linear layers of one forward (or training step)."""
    total = 0.0
    hooks = []

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Linear):
            per_output = module.in_features
        else:
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        forward = 2 * out.numel() * per_output
        if training:
            total += forward * (3 if inputs[0].requires_grad else 2)
        else:
            total += forward

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(module.register_forward_hook(hook))
    with torch.enable_grad() if training else torch.no_grad():
        model(x)
    for handle in hooks:
        handle.remove()
    return total


def _models(network: str) -> tuple[Any, torch.nn.Module, tuple[int, ...]]:
    build, build_torch, shape = NETWORKS[network]
    cp.manual_seed(0)
    ours = build()
    theirs = build_torch()
    copy_into_torch(ours, theirs)
    return ours, theirs, shape


def training_step_case(network: str, batch: int) -> Case:
    def setup() -> Setup:
        ours_model, theirs_model, shape = _models(network)
        ours_model.train()
        theirs_model.train()
        our_opt = optim.SGD(ours_model.parameters(), lr=0.01, momentum=0.9)
        their_opt = torch.optim.SGD(theirs_model.parameters(), lr=0.01, momentum=0.9)
        rng = np.random.default_rng(3)
        inputs = rng.standard_normal((batch, *shape), dtype=np.float32)
        labels = np.arange(batch) % 10
        our_x, our_t = cp.tensor(inputs), cp.tensor(labels)
        their_x, their_t = torch.tensor(inputs), torch.tensor(labels)
        flops = count_flops(theirs_model, their_x, training=True)

        def ours() -> None:
            our_opt.zero_grad()
            F.cross_entropy(ours_model(our_x), our_t).backward()
            our_opt.step()

        def theirs() -> None:
            their_opt.zero_grad()
            torch.nn.functional.cross_entropy(theirs_model(their_x), their_t).backward()
            their_opt.step()

        return ours, theirs, flops, None

    return Case(f"{network} training step b{batch}", "step", setup, repeats=7, memory=True)


def inference_case(network: str, batch: int) -> Case:
    def setup() -> Setup:
        ours_model, theirs_model, shape = _models(network)
        ours_model.eval()
        theirs_model.eval()
        inputs = np.random.default_rng(4).standard_normal((batch, *shape), dtype=np.float32)
        our_x, their_x = cp.tensor(inputs), torch.tensor(inputs)
        flops = count_flops(theirs_model, their_x, training=False)

        def ours() -> None:
            with cp.no_grad():
                ours_model(our_x)

        def theirs() -> None:
            with torch.no_grad():
                theirs_model(their_x)

        return ours, theirs, flops, batch

    repeats = 25 if batch == 1 else 9
    return Case(f"{network} inference b{batch}", "inference", setup, repeats=repeats)


def cases() -> list[Case]:
    return [
        training_step_case("LeNet-5", 128),
        training_step_case("ResNet-20", 128),
        training_step_case("DenseNet-BC", 64),
        training_step_case("TDNN", 64),
        inference_case("LeNet-5", 1),
        inference_case("LeNet-5", 128),
        inference_case("ResNet-20", 1),
        inference_case("ResNet-20", 128),
    ]
