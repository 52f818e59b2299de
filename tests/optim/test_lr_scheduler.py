"""Learning-rate schedulers against ``torch.optim.lr_scheduler``: identical lr sequences.

The recurrences are evaluated in Python floats by both libraries, so the sequences must be equal
exactly (not merely close), including past CosineAnnealingLR's T_max and at OneCycleLR's last
step; driving an optimizer, the parameters must stay within rounding of PyTorch's.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import convprop as cp
import convprop.optim as optim
from convprop.nn import Parameter
from convprop.optim import lr_scheduler
from tests.optim.test_optimizers import Lockstep

STEPS = 50
LRS = [0.1, 0.03, 0.5]


def optimizer_pair(cls: type = optim.SGD, lrs: list[float] = LRS, **defaults: Any) -> tuple:
    ours = cls([{"params": [Parameter(np.ones(2))], "lr": lr} for lr in lrs], **defaults)
    torch_cls = getattr(torch.optim, cls.__name__)
    theirs = torch_cls(
        [{"params": [torch.nn.Parameter(torch.ones(2))], "lr": lr} for lr in lrs], **defaults
    )
    return ours, theirs


SCHEDULES: list[tuple[str, dict[str, Any]]] = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("StepLR", {"step_size": 7}),
    ("MultiStepLR", {"milestones": [5, 10, 10, 30], "gamma": 0.3}),
    ("MultiStepLR", {"milestones": []}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("ExponentialLR", {"gamma": 0.99}),
    ("CosineAnnealingLR", {"T_max": 10}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 1e-3}),
    ("CosineAnnealingLR", {"T_max": STEPS}),
    ("CosineAnnealingLR", {"T_max": 1}),
    ("LinearLR", {}),
    ("LinearLR", {"start_factor": 0.1, "end_factor": 1.0, "total_iters": 10}),
    ("LinearLR", {"start_factor": 1.0, "end_factor": 0.2, "total_iters": 20}),
    ("LinearLR", {"start_factor": 0.5, "end_factor": 0.0, "total_iters": 3}),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": STEPS}),
    ("OneCycleLR", {"max_lr": [0.1, 0.2, 1.0], "epochs": 5, "steps_per_epoch": 10}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS, "three_phase": True}),
    (
        "OneCycleLR",
        {
            "max_lr": 0.5,
            "total_steps": STEPS,
            "anneal_strategy": "linear",
            "pct_start": 0.25,
            "div_factor": 10.0,
            "final_div_factor": 100.0,
        },
    ),
    (
        "OneCycleLR",
        {
            "max_lr": 0.5,
            "total_steps": STEPS,
            "three_phase": True,
            "anneal_strategy": "linear",
            "base_momentum": [0.8, 0.7, 0.6],
        },
    ),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS, "cycle_momentum": False}),
]


def momenta(optimizer: Any) -> list[Any]:
    return [
        group["betas"][0] if "betas" in group else group.get("momentum")
        for group in optimizer.param_groups
    ]


@pytest.mark.parametrize("optimizer_cls", [optim.SGD, optim.Adam])
@pytest.mark.parametrize(("name", "kwargs"), SCHEDULES, ids=[f"{n}-{k}" for n, k in SCHEDULES])
def test_lr_sequence_equals_torch(name: str, kwargs: dict[str, Any], optimizer_cls: type) -> None:
    extra = {"momentum": 0.9} if optimizer_cls is optim.SGD else {}
    ours_optimizer, theirs_optimizer = optimizer_pair(optimizer_cls, **extra)
    ours = getattr(lr_scheduler, name)(ours_optimizer, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(theirs_optimizer, **kwargs)
    assert ours.last_epoch == theirs.last_epoch == 0
    assert ours.get_last_lr() == theirs.get_last_lr()
    assert ours.base_lrs == theirs.base_lrs
    for step in range(STEPS):
        ours_optimizer.step()
        theirs_optimizer.step()
        ours.step()
        theirs.step()
        assert ours.get_last_lr() == theirs.get_last_lr(), f"step {step}"
        assert [g["lr"] for g in ours_optimizer.param_groups] == ours.get_last_lr()
        assert momenta(ours_optimizer) == momenta(theirs_optimizer), f"momentum, step {step}"
        assert ours.last_epoch == theirs.last_epoch
    for ours_group, theirs_group in zip(
        ours_optimizer.param_groups, theirs_optimizer.param_groups, strict=True
    ):
        for key in ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"):
            assert ours_group.get(key) == theirs_group.get(key), key


def test_cosine_annealing_rises_again_past_t_max() -> None:
    optimizer, _ = optimizer_pair(lrs=[1.0])
    scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=4, eta_min=0.0)
    values = [scheduler.get_last_lr()[0]]
    for _ in range(8):
        optimizer.step()
        scheduler.step()
        values.append(scheduler.get_last_lr()[0])
    closed_form = [(1 + np.cos(np.pi * t / 4)) / 2 for t in range(9)]
    np.testing.assert_allclose(values, closed_form, atol=1e-15)
    assert values[4] == pytest.approx(0.0, abs=1e-15) and values[8] == pytest.approx(1.0)


def test_chained_schedulers_equal_torch() -> None:
    # Warm-up then exponential decay, both acting on the same optimizer every step.
    ours_optimizer, theirs_optimizer = optimizer_pair()
    ours = [
        lr_scheduler.LinearLR(ours_optimizer, 0.25, total_iters=4),
        lr_scheduler.ExponentialLR(ours_optimizer, 0.95),
    ]
    theirs = [
        torch.optim.lr_scheduler.LinearLR(theirs_optimizer, 0.25, total_iters=4),
        torch.optim.lr_scheduler.ExponentialLR(theirs_optimizer, 0.95),
    ]
    for step in range(20):
        ours_optimizer.step()
        theirs_optimizer.step()
        for scheduler in ours + theirs:
            scheduler.step()
        assert ours[1].get_last_lr() == theirs[1].get_last_lr(), step


DRIVEN = [
    (
        optim.SGD,
        {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
        "StepLR",
        {"step_size": 4, "gamma": 0.5},
    ),
    (optim.SGD, {"momentum": 0.8}, "OneCycleLR", {"max_lr": 0.2, "total_steps": 25}),
    (optim.Adam, {"amsgrad": True}, "CosineAnnealingLR", {"T_max": 8, "eta_min": 1e-3}),
    (optim.Adam, {}, "OneCycleLR", {"max_lr": 0.1, "total_steps": 25, "three_phase": True}),
    (optim.AdamW, {}, "LinearLR", {"start_factor": 0.1, "total_iters": 10}),
    (optim.RMSprop, {"momentum": 0.5}, "MultiStepLR", {"milestones": [3, 9]}),
    (
        optim.RMSprop,
        {"momentum": 0.5, "centered": True},
        "OneCycleLR",
        {"max_lr": 0.01, "total_steps": 25, "anneal_strategy": "linear"},
    ),
    (optim.SGD, {"momentum": 0.9}, "ExponentialLR", {"gamma": 0.9}),
]


@pytest.mark.parametrize(("cls", "defaults", "name", "kwargs"), DRIVEN)
def test_scheduler_driving_optimizer_matches_torch(
    cls: type, defaults: dict[str, Any], name: str, kwargs: dict[str, Any]
) -> None:
    pair = Lockstep(cls, [{"lr": 0.05}, {"lr": 0.01}], defaults)
    ours = getattr(lr_scheduler, name)(pair.optimizer, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(pair.reference, **kwargs)
    for step in range(25):
        pair.step(step)
        ours.step()
        theirs.step()
        pair.check(f"step {step}")
        assert ours.get_last_lr() == theirs.get_last_lr()
        assert momenta(pair.optimizer) == momenta(pair.reference)


# ---------------------------------------------------------------------- ReduceLROnPlateau
METRICS = [
    1.0,
    0.9,
    0.9,
    0.95,
    0.91,
    0.8999,
    0.9,
    0.95,
    0.96,
    0.97,
    0.5,
    0.5,
    0.5,
    0.5,
    0.49995,
    0.6,
    0.7,
    0.4,
    0.4,
    0.4,
    0.4,
    0.4,
    0.4,
    0.3,
    0.3,
    0.3,
    0.3,
    0.3,
    0.3,
    0.3,
] + [0.31] * 12


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"patience": 0},
        {"patience": 2, "factor": 0.5},
        {"patience": 1, "cooldown": 2, "factor": 0.5},
        {"patience": 1, "threshold": 0.05, "threshold_mode": "abs"},
        {"mode": "max", "patience": 1, "factor": 0.2},
        {"mode": "max", "patience": 0, "threshold_mode": "abs", "threshold": 0.0},
        {"patience": 0, "min_lr": [0.05, 0.01, 0.1]},
        {"patience": 0, "factor": 0.5, "min_lr": 0.02},
        {"patience": 0, "factor": 0.9999, "eps": 1e-4},
    ],
)
def test_reduce_lr_on_plateau_equals_torch(kwargs: dict[str, Any]) -> None:
    ours_optimizer, theirs_optimizer = optimizer_pair()
    ours = lr_scheduler.ReduceLROnPlateau(ours_optimizer, **kwargs)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_optimizer, **kwargs)
    assert ours.get_last_lr() == theirs.get_last_lr()
    for epoch, metric in enumerate(METRICS):
        ours_optimizer.step()
        theirs_optimizer.step()
        ours.step(metric)
        theirs.step(metric)
        assert ours.get_last_lr() == theirs.get_last_lr(), f"epoch {epoch}"
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter, ours.last_epoch) == (
            theirs.best,
            theirs.num_bad_epochs,
            theirs.cooldown_counter,
            theirs.last_epoch,
        )
    if "min_lr" not in kwargs and kwargs.get("eps") is None:
        assert ours.get_last_lr() != LRS  # the script does plateau


def test_reduce_lr_on_plateau_accepts_tensor_metric() -> None:
    optimizer, _ = optimizer_pair(lrs=[1.0])
    scheduler = lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
    scheduler.step(cp.tensor(1.0))
    scheduler.step(cp.tensor(2.0))
    assert scheduler.get_last_lr() == [pytest.approx(0.1)]


# ---------------------------------------------------------------------- state_dict
def json_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(state))


def json_round_trip_optimizer(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state dict through JSON, arrays kept aside (as a checkpoint would)."""
    arrays = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                arrays[(str(index), key)] = value
    text = json.dumps(
        {
            "state": {
                index: {k: v for k, v in entry.items() if not isinstance(v, np.ndarray)}
                for index, entry in state["state"].items()
            },
            "param_groups": state["param_groups"],
        }
    )
    loaded = json.loads(text)
    for (index, key), value in arrays.items():
        loaded["state"][index][key] = value.copy()
    return loaded


RESUMABLE = [
    (optim.SGD, {"momentum": 0.9}, "StepLR", {"step_size": 3, "gamma": 0.5}),
    (optim.SGD, {"momentum": 0.9}, "MultiStepLR", {"milestones": [4, 4, 11], "gamma": 0.5}),
    (optim.Adam, {}, "ExponentialLR", {"gamma": 0.9}),
    (optim.Adam, {}, "CosineAnnealingLR", {"T_max": 6, "eta_min": 1e-3}),
    (optim.AdamW, {}, "LinearLR", {"start_factor": 0.2, "total_iters": 10}),
    (optim.SGD, {"momentum": 0.9}, "OneCycleLR", {"max_lr": 0.3, "total_steps": 16}),
    (optim.Adam, {}, "OneCycleLR", {"max_lr": 0.1, "total_steps": 16, "three_phase": True}),
    (optim.RMSprop, {"momentum": 0.5}, "ReduceLROnPlateau", {"patience": 1, "factor": 0.5}),
]


def drive(
    scheduler: Any, optimizer: Any, params: list[Parameter], steps: range, lrs: list[list[float]]
) -> None:
    for step in steps:
        for param in params:
            param.grad = cp.tensor(np.sin(param.data) + 0.1 * param.data)
        optimizer.step()
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(METRICS[step])
        else:
            scheduler.step()
        lrs.append(scheduler.get_last_lr())


@pytest.mark.parametrize(("cls", "defaults", "name", "kwargs"), RESUMABLE)
def test_scheduler_state_dict_round_trip(
    cls: type, defaults: dict[str, Any], name: str, kwargs: dict[str, Any]
) -> None:
    def build(values: list[np.ndarray]) -> tuple[list[Parameter], Any, Any]:
        params = [Parameter(v.copy()) for v in values]
        optimizer = cls([{"params": params[:1], "lr": 0.05}, {"params": params[1:]}], **defaults)
        return params, optimizer, getattr(lr_scheduler, name)(optimizer, **kwargs)

    initial = [np.linspace(-1, 1, 4), np.linspace(0.5, 2, 3)]
    expected_params, optimizer, scheduler = build(initial)
    expected_lrs: list[list[float]] = []
    drive(scheduler, optimizer, expected_params, range(16), expected_lrs)

    params, optimizer, scheduler = build(initial)
    lrs: list[list[float]] = []
    drive(scheduler, optimizer, params, range(7), lrs)
    optimizer_state = json_round_trip_optimizer(optimizer.state_dict())
    scheduler_state = json_round_trip(scheduler.state_dict())

    params, optimizer, scheduler = build([p.data for p in params])
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    drive(scheduler, optimizer, params, range(7, 16), lrs)
    assert lrs == expected_lrs
    for ours, expected in zip(params, expected_params, strict=True):
        np.testing.assert_array_equal(ours.data, expected.data)


def test_state_dict_keys_and_copies() -> None:
    optimizer, theirs_optimizer = optimizer_pair()
    ours = lr_scheduler.StepLR(optimizer, step_size=2)
    theirs = torch.optim.lr_scheduler.StepLR(theirs_optimizer, step_size=2)
    state = ours.state_dict()
    assert "optimizer" not in state
    assert set(state) <= set(theirs.state_dict())
    state["base_lrs"].append(1.0)
    assert len(ours.base_lrs) == 3  # a copy
    with pytest.raises(ValueError, match="base_lrs has 4 entries but the optimizer has 3"):
        ours.load_state_dict(state)


def test_resuming_with_last_epoch_equals_torch() -> None:
    ours_optimizer, theirs_optimizer = optimizer_pair()
    for group in ours_optimizer.param_groups + theirs_optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    ours = lr_scheduler.CosineAnnealingLR(ours_optimizer, T_max=10, last_epoch=4)
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(theirs_optimizer, T_max=10, last_epoch=4)
    for _ in range(8):
        assert ours.get_last_lr() == theirs.get_last_lr()
        ours_optimizer.step()
        theirs_optimizer.step()
        ours.step()
        theirs.step()


# ---------------------------------------------------------------------- errors and warnings
class NoMomentum(optim.Optimizer):
    def __init__(self, params: Any) -> None:
        super().__init__(params, {"lr": 0.1})

    def _step_group(self, group: dict[str, Any]) -> None:
        pass


def sgd(lrs: list[float] = LRS) -> optim.SGD:
    return optimizer_pair(lrs=lrs)[0]


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: lr_scheduler.StepLR("sgd", 3), TypeError, "str is not an Optimizer"),
        (lambda: lr_scheduler.ReduceLROnPlateau(None), TypeError, "NoneType is not an Optimizer"),
        (
            lambda: lr_scheduler.StepLR(sgd(), 0),
            ValueError,
            "StepLR: step_size must be a positive integer, got 0",
        ),
        (
            lambda: lr_scheduler.CosineAnnealingLR(sgd(), T_max=0),
            ValueError,
            "T_max must be positive, got 0",
        ),
        (
            lambda: lr_scheduler.LinearLR(sgd(), start_factor=0),
            ValueError,
            "Starting multiplicative factor expected to be greater than 0 and less or equal to 1, "
            "got start_factor=0",
        ),
        (
            lambda: lr_scheduler.LinearLR(sgd(), start_factor=1.5),
            ValueError,
            "got start_factor=1.5",
        ),
        (
            lambda: lr_scheduler.LinearLR(sgd(), end_factor=-0.1),
            ValueError,
            "Ending multiplicative factor expected to be between 0 and 1, got end_factor=-0.1",
        ),
        (lambda: lr_scheduler.LinearLR(sgd(), end_factor=1.1), ValueError, "end_factor=1.1"),
        (
            lambda: lr_scheduler.ReduceLROnPlateau(sgd(), factor=1.0),
            ValueError,
            r"Factor should be < 1.0, got factor=1.0",
        ),
        (
            lambda: lr_scheduler.ReduceLROnPlateau(sgd(), mode="avg"),
            ValueError,
            "mode avg is unknown!",
        ),
        (
            lambda: lr_scheduler.ReduceLROnPlateau(sgd(), threshold_mode="pct"),
            ValueError,
            "threshold mode pct is unknown!",
        ),
        (
            lambda: lr_scheduler.ReduceLROnPlateau(sgd(), min_lr=[0.1, 0.2]),
            ValueError,
            "expected 3 min_lrs, got 2",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), 0.1, total_steps=0),
            ValueError,
            "Expected positive integer total_steps, but got 0",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), 0.1, total_steps=2.5),
            ValueError,
            "Expected positive integer total_steps, but got 2.5",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), 0.1, epochs=0, steps_per_epoch=3),
            ValueError,
            "Expected positive integer epochs, but got 0",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), 0.1, epochs=2, steps_per_epoch=-3),
            ValueError,
            "Expected positive integer steps_per_epoch, but got -3",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), 0.1, epochs=2),
            ValueError,
            r"You must define either total_steps OR \(epochs AND steps_per_epoch\)",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), 0.1, 10, pct_start=1.5),
            ValueError,
            "Expected float between 0 and 1 pct_start, but got 1.5",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), 0.1, 10, pct_start=1),
            ValueError,
            "Expected float between 0 and 1 pct_start, but got 1",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), 0.1, 10, anneal_strategy="exp"),
            ValueError,
            "anneal_strategy must be one of 'cos' or 'linear', instead got exp",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), [0.1, 0.2], 10),
            ValueError,
            "max_lr must have the same length as optimizer.param_groups. max_lr has 2 values, "
            "param_groups has 3.",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(sgd(), 0.1, 10, base_momentum=[0.8]),
            ValueError,
            "base_momentum must have the same length",
        ),
        (
            lambda: lr_scheduler.OneCycleLR(NoMomentum([Parameter(np.ones(1))]), 0.1, 10),
            ValueError,
            r"optimizer must support momentum or beta1 with `cycle_momentum` option "
            r"enabled \(NoMomentum has neither\)",
        ),
        (
            lambda: lr_scheduler.StepLR(sgd(), 3, last_epoch=5),
            KeyError,
            r"param 'initial_lr' is not specified in param_groups\[0\] when resuming scheduler "
            "with last_epoch >= 0",
        ),
    ],
)
def test_invalid_arguments(make: Callable[[], Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make()


def test_torch_agrees_on_the_errors_we_share() -> None:
    theirs = optimizer_pair()[1]
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, factor=1.0)
    with pytest.raises(ValueError, match="Expected float between 0 and 1 pct_start"):
        torch.optim.lr_scheduler.OneCycleLR(theirs, 0.1, 10, pct_start=1)


def test_one_cycle_refuses_steps_past_total_steps() -> None:
    ours_optimizer, theirs_optimizer = optimizer_pair(momentum=0.9)
    ours = lr_scheduler.OneCycleLR(ours_optimizer, 0.1, total_steps=5)
    theirs = torch.optim.lr_scheduler.OneCycleLR(theirs_optimizer, 0.1, total_steps=5)
    for _ in range(5):
        ours_optimizer.step()
        theirs_optimizer.step()
        ours.step()
        theirs.step()
    assert ours.get_last_lr() == theirs.get_last_lr()
    with pytest.raises(
        ValueError, match="Tried to step 6 times. The specified number of total steps is 5"
    ):
        ours.step()
    with pytest.raises(ValueError, match="Tried to step 6 times"):
        theirs.step()


def test_reduce_lr_on_plateau_group_count_change() -> None:
    optimizer = sgd()
    scheduler = lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, min_lr=[0.0, 0.0, 0.0])
    optimizer.add_param_group({"params": [Parameter(np.ones(1))]})
    scheduler.step(1.0)
    with pytest.raises(
        RuntimeError,
        match=r"The number of param groups in the `optimizer` \(4\) "
        r"differs from when `ReduceLROnPlateau` was initialized \(3\)",
    ):
        scheduler.step(2.0)


def test_warns_when_stepped_before_the_optimizer() -> None:
    optimizer = sgd()
    scheduler = lr_scheduler.StepLR(optimizer, 2)
    with pytest.warns(
        UserWarning,
        match="Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`",
    ):
        scheduler.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer = sgd()
        scheduler = lr_scheduler.StepLR(optimizer, 2)
        optimizer.step()
        scheduler.step()
        scheduler.step()
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        scheduler.get_lr()


def test_constructor_sets_initial_lr_like_torch() -> None:
    ours_optimizer, theirs_optimizer = optimizer_pair()
    ours_optimizer.param_groups[0]["initial_lr"] = 7.0  # already there: kept (setdefault)
    theirs_optimizer.param_groups[0]["initial_lr"] = 7.0
    ours = lr_scheduler.ExponentialLR(ours_optimizer, 0.5)
    theirs = torch.optim.lr_scheduler.ExponentialLR(theirs_optimizer, 0.5)
    assert ours.base_lrs == theirs.base_lrs == [7.0, 0.03, 0.5]
    assert [g["initial_lr"] for g in ours_optimizer.param_groups] == [7.0, 0.03, 0.5]
