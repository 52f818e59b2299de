"""Lockstep training: convprop and torch take the same 20 optimizer steps on the same batches.

LeNet-5, ResNet-20 and a DenseNet-BC, float64, identical initial weights (convprop's copied
into the torch mirrors of ``test_zoo.py``) and identical batches. After every step every
parameter must equal torch's within 1e-9 relative; at the end the BatchNorm running statistics
and ``num_batches_tracked`` must be equal too. Each run exercises the whole chain at once:
forward, cross-entropy, every hand-written backward, the optimizer's update rule and the
learning-rate schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convprop as cp
import convprop.optim as cp_optim
from convprop import models
from convprop.nn import functional as F
from tests.models.mirrors import (
    TorchCifarResNet,
    TorchDenseNetBC,
    TorchLeNet5,
    copy_into_torch,
)
from tests.reference import assert_close

STEPS = 20
RTOL = 1e-9
CLASSES = 10

# (id, convprop builder, torch builder, batch shape); small inputs keep 20 steps quick.
MODELS: list[tuple[str, Callable[[], Any], Callable[[], torch.nn.Module], tuple[int, ...]]] = [
    ("lenet5", lambda: models.lenet5(), lambda: TorchLeNet5(), (4, 1, 28, 28)),
    ("resnet20", lambda: models.resnet20(), lambda: TorchCifarResNet(3), (4, 3, 8, 8)),
    ("densenet_bc_10", lambda: models.densenet_bc(10), lambda: TorchDenseNetBC(10), (4, 3, 12, 12)),
]

# Each builder takes the optim module (convprop.optim or torch.optim) and the parameters, so
# one line states the same optimizer and schedule for both libraries.
Recipe = Callable[[Any, Any], tuple[Any, Any]]


def sgd_nesterov_multistep(optim: Any, params: Any) -> tuple[Any, Any]:
    optimizer = optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return optimizer, optim.lr_scheduler.MultiStepLR(optimizer, milestones=[6, 13], gamma=0.3)


def sgd_nesterov_cosine(optim: Any, params: Any) -> tuple[Any, Any]:
    optimizer = optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return optimizer, optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS, eta_min=1e-3)


def adam_step(optim: Any, params: Any) -> tuple[Any, Any]:
    optimizer = optim.Adam(params, lr=2e-3)
    return optimizer, optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.5)


def adamw_one_cycle(optim: Any, params: Any) -> tuple[Any, Any]:
    optimizer = optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    return optimizer, optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=STEPS)


# Every model with the three recipes; the cheap LeNet-5 also with the cosine schedule.
CASES = [
    pytest.param(build, build_torch, shape, recipe, id=f"{name}-{recipe.__name__}")
    for name, build, build_torch, shape in MODELS
    for recipe in (sgd_nesterov_multistep, adam_step, adamw_one_cycle, sgd_nesterov_cosine)
    if name == "lenet5" or recipe is not sgd_nesterov_cosine
]


@pytest.mark.parametrize(("build", "build_torch", "shape", "recipe"), CASES)
def test_training_in_lockstep_with_torch(
    build: Callable[[], Any],
    build_torch: Callable[[], torch.nn.Module],
    shape: tuple[int, ...],
    recipe: Recipe,
) -> None:
    cp.manual_seed(0)
    ours = build().double()
    theirs = build_torch().double()
    copy_into_torch(ours, theirs)
    our_optimizer, our_schedule = recipe(cp_optim, ours.parameters())
    their_optimizer, their_schedule = recipe(torch.optim, theirs.parameters())
    their_params = dict(theirs.named_parameters())
    rng = np.random.default_rng(1)
    for step in range(STEPS):
        images = rng.standard_normal(shape)
        labels = rng.integers(0, CLASSES, shape[0])

        our_optimizer.zero_grad()
        our_loss = F.cross_entropy(ours(cp.tensor(images)), cp.tensor(labels))
        our_loss.backward()
        our_optimizer.step()
        our_schedule.step()

        their_optimizer.zero_grad()
        their_loss = TF.cross_entropy(theirs(torch.tensor(images)), torch.tensor(labels))
        their_loss.backward()
        their_optimizer.step()
        their_schedule.step()

        assert_close(our_loss.numpy(), their_loss, RTOL, f"loss at step {step}")
        assert our_schedule.get_last_lr() == pytest.approx(their_schedule.get_last_lr(), rel=1e-15)
        for name, param in ours.named_parameters():
            assert_close(param.numpy(), their_params[name], RTOL, f"{name} after step {step}")
    their_buffers = dict(theirs.named_buffers())
    for name, buffer in ours.named_buffers():
        if name.endswith("num_batches_tracked"):
            assert int(buffer.numpy()) == int(their_buffers[name]) == STEPS, name
        else:
            assert_close(buffer.numpy(), their_buffers[name], RTOL, name)
    # The run did train: the weights moved away from their start.
    assert our_loss.item() != pytest.approx(0.0)
