"""Optimizers against ``torch.optim`` in float64: identical parameter trajectories step by step.

Both libraries start from the same parameters and compute the same gradient function of their own
current values, g = sin(p) + 0.1 p, so any difference in an update rule shows up in every later
step. Some parameters receive no gradient on some steps (grad None: skipped by both).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import convprop as cp
import convprop.optim as optim
from convprop.nn import Parameter
from tests.reference import assert_close

RTOL = 1e-12
SHAPES = [(3, 4), (5,), (2, 3, 2), (4,), ()]

TORCH_CLASS = {
    optim.SGD: torch.optim.SGD,
    optim.Adam: torch.optim.Adam,
    optim.AdamW: torch.optim.AdamW,
    optim.RMSprop: torch.optim.RMSprop,
}


# ---------------------------------------------------------------------- lockstep helpers
class Lockstep:
    """The same parameters, groups and optimizer in convprop and in PyTorch."""

    def __init__(
        self,
        cls: type,
        group_options: list[dict[str, Any]],
        defaults: dict[str, Any],
        seed: int = 0,
        dtype: Any = np.float64,
        shapes: list[tuple[int, ...]] = SHAPES,
    ) -> None:
        rng = np.random.default_rng(seed)
        arrays = [rng.uniform(-2, 2, shape).astype(dtype) for shape in shapes]
        self.ours = [Parameter(a.copy()) for a in arrays]
        self.theirs = [torch.nn.Parameter(torch.tensor(a.copy())) for a in arrays]
        self.optimizer = cls(self._groups(self.ours, group_options), **defaults)
        self.reference = TORCH_CLASS[cls](
            self._groups(self.theirs, group_options), foreach=False, **defaults
        )

    @staticmethod
    def _groups(params: list[Any], group_options: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Parameters are dealt round-robin to the groups, so every group has at least one.
        count = len(group_options)
        return [
            {"params": params[number::count], **options}
            for number, options in enumerate(group_options)
        ]

    def set_grads(self, step: int) -> None:
        for index, (ours, theirs) in enumerate(zip(self.ours, self.theirs, strict=True)):
            if index == 1 and step % 3 == 2:  # sometimes no gradient at all: the step skips it
                ours.grad, theirs.grad = None, None
                continue
            ours.grad = cp.tensor(np.sin(ours.data) + 0.1 * ours.data)
            with torch.no_grad():
                theirs.grad = torch.sin(theirs) + 0.1 * theirs

    def step(self, step: int) -> None:
        self.set_grads(step)
        self.optimizer.step()
        self.reference.step()

    def check(self, what: str = "", rtol: float = RTOL) -> None:
        for index, (ours, theirs) in enumerate(zip(self.ours, self.theirs, strict=True)):
            assert ours.data.dtype == theirs.detach().numpy().dtype
            assert_close(ours.data, theirs, rtol=rtol, what=f"{what} parameter {index}")


def run_lockstep(
    cls: type, group_options: list[dict[str, Any]], defaults: dict[str, Any], steps: int = 25
) -> Lockstep:
    pair = Lockstep(cls, group_options, defaults)
    for step in range(steps):
        pair.step(step)
        pair.check(f"step {step}")
    return pair


lrs = st.sampled_from([1e-3, 0.01, 0.05, 0.1, 0.3])
weight_decays = st.sampled_from([0.0, 1e-2, 0.1])


@st.composite
def sgd_options(draw: st.DrawFn) -> dict[str, Any]:
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.sampled_from([0.0, 0.1, 0.5]))
    return {
        "lr": draw(lrs),
        "momentum": momentum,
        "dampening": dampening,
        "nesterov": nesterov,
        "weight_decay": draw(weight_decays),
        "maximize": draw(st.booleans()),
    }


@st.composite
def adam_options(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "lr": draw(lrs),
        "betas": (draw(st.sampled_from([0.0, 0.5, 0.9])), draw(st.sampled_from([0.9, 0.999]))),
        "eps": draw(st.sampled_from([1e-8, 1e-3])),
        "weight_decay": draw(weight_decays),
        "amsgrad": draw(st.booleans()),
        "maximize": draw(st.booleans()),
    }


@st.composite
def rmsprop_options(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "lr": draw(st.sampled_from([1e-3, 0.01, 0.05])),
        "alpha": draw(st.sampled_from([0.5, 0.9, 0.99])),  # alpha=0 centered: sqrt(0-ish)
        "eps": draw(st.sampled_from([1e-8, 1e-3])),
        "weight_decay": draw(weight_decays),
        "momentum": draw(st.sampled_from([0.0, 0.5, 0.9])),
        "centered": draw(st.booleans()),
        "maximize": draw(st.booleans()),
    }


def groups_of(options: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    return st.lists(options, min_size=1, max_size=3)


# ---------------------------------------------------------------------- trajectories
@given(groups=groups_of(sgd_options()), defaults=sgd_options())
def test_sgd_matches_torch(groups: list[dict[str, Any]], defaults: dict[str, Any]) -> None:
    # Groups override some options and inherit the rest from the constructor's defaults.
    groups = [{k: v for k, v in g.items() if k != "lr" or i % 2 == 0} for i, g in enumerate(groups)]
    run_lockstep(optim.SGD, groups, defaults)


@given(groups=groups_of(adam_options()), defaults=adam_options())
def test_adam_matches_torch(groups: list[dict[str, Any]], defaults: dict[str, Any]) -> None:
    run_lockstep(optim.Adam, groups, defaults)


@given(groups=groups_of(adam_options()), defaults=adam_options())
def test_adamw_matches_torch(groups: list[dict[str, Any]], defaults: dict[str, Any]) -> None:
    run_lockstep(optim.AdamW, groups, defaults)


def test_adam_with_decoupled_weight_decay_is_adamw() -> None:
    run_lockstep(optim.Adam, [{}], {"weight_decay": 0.1, "decoupled_weight_decay": True})


@given(groups=groups_of(rmsprop_options()), defaults=rmsprop_options())
def test_rmsprop_matches_torch(groups: list[dict[str, Any]], defaults: dict[str, Any]) -> None:
    run_lockstep(optim.RMSprop, groups, defaults)


@pytest.mark.parametrize("cls", list(TORCH_CLASS))
def test_default_hyperparameters_match_torch(cls: type) -> None:
    run_lockstep(cls, [{}], {}, steps=10)


@pytest.mark.parametrize("cls", list(TORCH_CLASS))
def test_signature_defaults_match_torch(cls: type) -> None:
    ours = inspect.signature(cls).parameters
    theirs = inspect.signature(TORCH_CLASS[cls]).parameters
    for name, parameter in ours.items():
        assert name in theirs, name
        assert parameter.default == theirs[name].default, name
    # The positional order is PyTorch's too (maximize is keyword-only, as in torch's SGD/Adam).
    positional = [n for n, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == list(theirs)[: len(positional)]


def test_sgd_first_momentum_step_ignores_dampening() -> None:
    param = Parameter(np.array([1.0, -2.0]))
    optimizer = optim.SGD([param], lr=0.5, momentum=0.9, dampening=0.5)
    param.grad = cp.tensor(np.array([2.0, 4.0]))
    optimizer.step()
    np.testing.assert_array_equal(optimizer.state[param]["momentum_buffer"], [2.0, 4.0])
    np.testing.assert_array_equal(param.data, [0.0, -4.0])
    optimizer.step()  # b = 0.9 b + 0.5 g
    np.testing.assert_allclose(optimizer.state[param]["momentum_buffer"], [2.8, 5.6])


def test_adam_first_step_moves_by_lr() -> None:
    # After bias correction the first Adam step is lr * g / (|g| + eps') = lr * sign(g).
    param = Parameter(np.array([1.0, -2.0, 3.0]))
    optimizer = optim.Adam([param], lr=0.1, eps=0.0)
    param.grad = cp.tensor(np.array([0.3, -5.0, 2e-3]))
    optimizer.step()
    np.testing.assert_allclose(param.data, [0.9, -1.9, 2.9], rtol=1e-14)
    assert optimizer.state[param]["step"] == 1.0


def test_parameters_without_grad_are_skipped() -> None:
    used, unused = Parameter(np.ones(3)), Parameter(np.ones(2))
    for cls in TORCH_CLASS:
        optimizer = cls([used, unused], lr=0.1, weight_decay=0.1)
        used.grad, unused.grad = cp.tensor(np.ones(3)), None
        optimizer.step()
        np.testing.assert_array_equal(unused.data, np.ones(2))
        assert unused not in optimizer.state
        assert not np.array_equal(used.data, np.ones(3))
        used.data[...] = 1.0


def test_add_param_group_matches_torch() -> None:
    pair = Lockstep(optim.SGD, [{"lr": 0.1}], {"momentum": 0.9})
    extra = np.linspace(-1, 1, 6)
    ours_extra, theirs_extra = Parameter(extra.copy()), torch.nn.Parameter(torch.tensor(extra))
    for step in range(12):
        if step == 5:  # e.g. unfreezing a layer part-way through training
            pair.optimizer.add_param_group({"params": ours_extra, "lr": 0.02, "nesterov": True})
            pair.reference.add_param_group({"params": theirs_extra, "lr": 0.02, "nesterov": True})
            pair.ours.append(ours_extra)
            pair.theirs.append(theirs_extra)
        pair.step(step)
        pair.check(f"step {step}")
    assert pair.optimizer.param_groups[1]["momentum"] == 0.9


def test_param_groups_hold_every_hyperparameter() -> None:
    for cls, torch_cls in TORCH_CLASS.items():
        ours = cls([{"params": [Parameter(np.ones(2))], "lr": 0.5}], weight_decay=0.1)
        theirs = torch_cls(
            [{"params": [torch.nn.Parameter(torch.ones(2))], "lr": 0.5}], weight_decay=0.1
        )
        ours_group, theirs_group = ours.param_groups[0], theirs.param_groups[0]
        # PyTorch adds implementation switches (foreach, fused, capturable, differentiable).
        switches = {"foreach", "fused", "capturable", "differentiable"}
        assert set(ours_group) == set(theirs_group) - switches, cls
        for key in ours_group:
            if key != "params":
                assert ours_group[key] == theirs_group[key], (cls, key)


def test_named_parameters_are_accepted() -> None:
    weight, bias = Parameter(np.ones((2, 2))), Parameter(np.zeros(2))
    optimizer = optim.SGD([("weight", weight), ("bias", bias)], lr=0.1)
    assert optimizer.param_groups[0]["param_names"] == ["weight", "bias"]
    assert optimizer.param_groups[0]["params"] == [weight, bias] or all(
        a is b for a, b in zip(optimizer.param_groups[0]["params"], [weight, bias], strict=True)
    )
    assert optimizer.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]


# ---------------------------------------------------------------------- step API
def test_closure_runs_with_grad_enabled_and_returns_loss() -> None:
    param = Parameter(np.array([1.0, 2.0]))
    optimizer = optim.SGD([param], lr=0.1)
    calls = []

    def closure() -> cp.Tensor:
        calls.append(cp.is_grad_enabled())
        optimizer.zero_grad()
        loss = (param * param).sum()
        loss.backward()
        return loss

    with cp.no_grad():
        loss = optimizer.step(closure)
    assert calls == [True]
    assert float(loss) == 5.0
    np.testing.assert_allclose(param.data, [0.8, 1.6])  # p - 0.1 * 2p
    assert optimizer.step() is None


def test_step_records_no_graph() -> None:
    param = Parameter(np.array([1.0, 2.0]))
    for cls in TORCH_CLASS:
        optimizer = cls([param], lr=0.1)
        param.grad = cp.tensor(np.array([1.0, 1.0]))
        optimizer.step()
        assert param.grad_fn is None and param.is_leaf and param.requires_grad
        assert isinstance(param, Parameter)


def test_zero_grad() -> None:
    param = Parameter(np.array([1.0, 2.0]))
    optimizer = optim.SGD([param])
    param.grad = cp.tensor(np.array([3.0, 4.0]))
    grad = param.grad
    optimizer.zero_grad(set_to_none=False)
    assert param.grad is grad
    np.testing.assert_array_equal(param.grad.data, [0.0, 0.0])
    optimizer.zero_grad()
    assert param.grad is None
    optimizer.zero_grad()  # no grads: nothing to do


@pytest.mark.parametrize("cls", list(TORCH_CLASS))
def test_float32_stays_float32(cls: type) -> None:
    pair = Lockstep(cls, [{"lr": 0.01}], {"weight_decay": 0.01}, dtype=np.float32)
    for step in range(10):
        pair.step(step)
        pair.check(f"float32 step {step}", rtol=1e-5)
    for param in pair.ours:
        assert param.data.dtype == np.float32
        assert param.grad is None or param.grad.data.dtype == np.float32
        for value in pair.optimizer.state[param].values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32


# ---------------------------------------------------------------------- state_dict
def to_json_and_arrays(state: Any) -> tuple[str, list[np.ndarray]]:
    """Split a state dict into JSON text and a list of arrays (as a checkpoint file would)."""
    arrays: list[np.ndarray] = []

    def encode(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            arrays.append(value)
            return {"__array__": len(arrays) - 1}
        if isinstance(value, dict):
            return {key: encode(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(item) for item in value]
        return value

    return json.dumps(encode(state), allow_nan=False), arrays


def from_json_and_arrays(text: str, arrays: list[np.ndarray]) -> Any:
    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"__array__"}:
                return arrays[value["__array__"]].copy()
            return {key: decode(item) for key, item in value.items()}
        if isinstance(value, list):
            return [decode(item) for item in value]
        return value

    return decode(json.loads(text))


STATEFUL = [
    (optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (optim.Adam, {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01}),
    (optim.AdamW, {"lr": 0.05, "betas": (0.8, 0.99)}),
    (optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
]


@pytest.mark.parametrize(("cls", "defaults"), STATEFUL)
def test_state_dict_round_trip_through_json_continues_identically(
    cls: type, defaults: dict[str, Any]
) -> None:
    group_options = [{"lr": defaults["lr"] / 2}, {}]
    uninterrupted = Lockstep(cls, group_options, defaults)
    interrupted = Lockstep(cls, group_options, defaults)
    for step in range(8):
        uninterrupted.step(step)
        interrupted.step(step)
    text, arrays = to_json_and_arrays(interrupted.optimizer.state_dict())

    # A fresh optimizer on fresh parameter objects holding the checkpointed values.
    fresh = [Parameter(p.data.copy()) for p in interrupted.ours]
    fresh_groups = Lockstep._groups(fresh, group_options)
    optimizer = cls(fresh_groups, **defaults)
    optimizer.load_state_dict(from_json_and_arrays(text, arrays))
    for step in range(8, 16):
        uninterrupted.step(step)
        for param in fresh:
            param.grad = cp.tensor(np.sin(param.data) + 0.1 * param.data)
        fresh[1].grad = None if step % 3 == 2 else fresh[1].grad
        optimizer.step()
    for ours, expected in zip(fresh, uninterrupted.ours, strict=True):
        np.testing.assert_array_equal(ours.data, expected.data)


@pytest.mark.parametrize(("cls", "defaults"), STATEFUL)
def test_state_dict_structure_matches_torch(cls: type, defaults: dict[str, Any]) -> None:
    pair = Lockstep(cls, [{"lr": 0.01}, {}], defaults)
    for step in range(3):
        pair.step(step)
    ours, theirs = pair.optimizer.state_dict(), pair.reference.state_dict()
    assert list(ours["state"]) == sorted(theirs["state"])
    for index, entry in ours["state"].items():
        assert set(entry) == set(theirs["state"][index])
        for key, value in entry.items():
            expected = theirs["state"][index][key]
            if key == "step":
                assert isinstance(value, float) and value == float(expected)
            else:
                assert isinstance(value, np.ndarray)
                assert_close(value, expected, rtol=RTOL, what=key)
    for ours_group, theirs_group in zip(ours["param_groups"], theirs["param_groups"], strict=True):
        assert ours_group["params"] == theirs_group["params"]
    # Copies, not references: stepping on does not change a saved state dict.
    saved = pair.optimizer.state_dict()
    pair.step(3)
    for index, entry in saved["state"].items():
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, ours["state"][index][key])


@pytest.mark.parametrize(("cls", "defaults"), STATEFUL)
def test_state_dict_moves_to_torch_and_back(cls: type, defaults: dict[str, Any]) -> None:
    pair = Lockstep(cls, [{}], defaults)
    for step in range(4):
        pair.set_grads(step)
        pair.optimizer.step()
    # Hand our state to PyTorch (arrays -> tensors), continue both from the same values.
    with torch.no_grad():
        for ours, theirs in zip(pair.ours, pair.theirs, strict=True):
            theirs.copy_(torch.tensor(ours.data))
    state = pair.optimizer.state_dict()
    for entry in state["state"].values():
        for key, value in entry.items():
            entry[key] = torch.tensor(value)
    pair.reference.load_state_dict(state)
    for step in range(4, 10):
        pair.step(step)
        pair.check(f"after moving to torch, step {step}")
    # And PyTorch's state dict (tensors) loads into ours.
    pair.optimizer.load_state_dict(pair.reference.state_dict())
    for step in range(10, 14):
        pair.step(step)
        pair.check(f"after moving back, step {step}")


def test_load_state_dict_restores_hyperparameters_and_casts() -> None:
    param = Parameter(np.ones(3, dtype=np.float32))
    source = optim.SGD([param], lr=0.5, momentum=0.9)
    param.grad = cp.tensor(np.ones(3, dtype=np.float32))
    source.step()
    state = source.state_dict()
    state["state"][0]["momentum_buffer"] = state["state"][0]["momentum_buffer"].astype(np.float64)
    target = optim.SGD([param], lr=0.1)
    target.load_state_dict(state)
    assert target.param_groups[0]["lr"] == 0.5 and target.param_groups[0]["momentum"] == 0.9
    assert target.state[param]["momentum_buffer"].dtype == np.float32


def test_load_state_dict_errors() -> None:
    a, b, c = (Parameter(np.ones(n)) for n in (2, 3, 4))
    optimizer = optim.Adam([{"params": [a]}, {"params": [b, c]}])
    for param in (a, b, c):
        param.grad = cp.tensor(np.ones(param.shape))
    optimizer.step()
    state = optimizer.state_dict()

    with pytest.raises(ValueError, match="different number of parameter groups: 2 saved, 1"):
        optim.Adam([a, b, c]).load_state_dict(state)
    with pytest.raises(
        ValueError,
        match="doesn't match the size of optimizer's group: group 1 has 2 parameters saved but 1",
    ):
        optim.Adam([{"params": [a]}, {"params": [b]}]).load_state_dict(state)
    with pytest.raises(
        ValueError,
        match=r"'exp_avg' of parameter 1 has shape \(3,\) but the "
        r"parameter has shape \(4,\)",
    ):
        optim.Adam([{"params": [a]}, {"params": [c, b]}]).load_state_dict(state)
    with pytest.raises(ValueError, match="expected a dict with 'state' and 'param_groups'"):
        optimizer.load_state_dict({"state": {}})
    bad_index = {"state": {7: state["state"][0]}, "param_groups": state["param_groups"]}
    with pytest.raises(ValueError, match="state entry for parameter index 7"):
        optimizer.load_state_dict(bad_index)
    bad_lr = json.loads(json.dumps(state["param_groups"]))
    bad_lr[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate in loaded param group 0: -1.0"):
        optimizer.load_state_dict({"state": {}, "param_groups": bad_lr})


# ---------------------------------------------------------------------- validation
def one_param() -> list[Parameter]:
    return [Parameter(np.ones(2))]


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: optim.SGD(one_param(), lr=-0.1), ValueError, r"SGD: Invalid learning rate: -0.1"),
        (lambda: optim.SGD(one_param(), lr=float("nan")), ValueError, "Invalid learning rate: nan"),
        (lambda: optim.SGD(one_param(), momentum=-0.5), ValueError, "Invalid momentum value: -0.5"),
        (
            lambda: optim.SGD(one_param(), weight_decay=-1),
            ValueError,
            "Invalid weight_decay value: -1",
        ),
        (
            lambda: optim.SGD(one_param(), nesterov=True),
            ValueError,
            "Nesterov momentum requires a momentum and zero dampening, got momentum=0, dampening=0",
        ),
        (
            lambda: optim.SGD(one_param(), momentum=0.9, dampening=0.1, nesterov=True),
            ValueError,
            "got momentum=0.9, dampening=0.1",
        ),
        (lambda: optim.SGD(one_param(), lr="0.1"), TypeError, "lr must be a real number, got str"),
        (lambda: optim.Adam(one_param(), lr=-1e-3), ValueError, "Adam: Invalid learning rate"),
        (lambda: optim.Adam(one_param(), eps=-1e-8), ValueError, "Invalid epsilon value: -1e-08"),
        (
            lambda: optim.Adam(one_param(), betas=(1.0, 0.999)),
            ValueError,
            r"Invalid beta parameter at index 0: 1.0 \(betas must lie in \[0, 1\)\)",
        ),
        (
            lambda: optim.Adam(one_param(), betas=(0.9, -0.1)),
            ValueError,
            "Invalid beta parameter at index 1: -0.1",
        ),
        (lambda: optim.Adam(one_param(), betas=0.9), TypeError, "betas must be a pair"),
        (
            lambda: optim.Adam(one_param(), weight_decay=-0.1),
            ValueError,
            "Invalid weight_decay value: -0.1",
        ),
        (
            lambda: optim.AdamW(one_param(), betas=(0.9, 1.5)),
            ValueError,
            "AdamW: Invalid beta parameter at index 1: 1.5",
        ),
        (lambda: optim.AdamW(one_param(), lr=-1), ValueError, "AdamW: Invalid learning rate: -1"),
        (lambda: optim.RMSprop(one_param(), lr=-1), ValueError, "RMSprop: Invalid learning rate"),
        (lambda: optim.RMSprop(one_param(), alpha=-0.9), ValueError, "Invalid alpha value: -0.9"),
        (lambda: optim.RMSprop(one_param(), eps=-1.0), ValueError, "Invalid epsilon value"),
        (lambda: optim.RMSprop(one_param(), momentum=-1.0), ValueError, "Invalid momentum value"),
        (
            lambda: optim.RMSprop(one_param(), weight_decay=-1.0),
            ValueError,
            "Invalid weight_decay value",
        ),
        (
            lambda: optim.SGD([{"params": one_param(), "lr": -2.0}]),
            ValueError,
            "Invalid learning rate in param group 0: -2.0",
        ),
        (lambda: optim.SGD([]), ValueError, "SGD: optimizer got an empty parameter list"),
        (lambda: optim.SGD([{"params": []}]), ValueError, "empty parameter list"),
        (
            lambda: optim.SGD(Parameter(np.ones(2))),
            TypeError,
            "params should be an iterable of Tensors or dicts, but got a single Parameter",
        ),
        (
            lambda: optim.SGD(np.ones(3)),
            TypeError,
            "optimizer can only optimize Tensors .Parameters., but one of the params is float",
        ),
        (lambda: optim.SGD([np.ones(3)]), TypeError, "one of the params is ndarray"),
        (lambda: optim.SGD({Parameter(np.ones(2))}), TypeError, "sets will change"),
        (lambda: optim.SGD([{"params": {Parameter(np.ones(2))}}]), TypeError, "Please use a list"),
        (lambda: optim.SGD([{"lr": 0.1}]), ValueError, "must have a 'params' entry"),
        (
            lambda: optim.SGD([cp.tensor(np.ones(2), requires_grad=True) * 2]),
            ValueError,
            "can't optimize a non-leaf Tensor",
        ),
    ],
)
def test_invalid_arguments(make: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make()


def test_duplicate_parameters_are_refused() -> None:
    param = Parameter(np.ones(2))
    with pytest.raises(ValueError, match=r"contains the same parameter twice \(position 1"):
        optim.SGD([param, param])
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optim.SGD([{"params": [param]}, {"params": [param]}])
    optimizer = optim.SGD([param])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optimizer.add_param_group({"params": [param]})
    with pytest.raises(TypeError, match="param_group must be a dict, but got list"):
        optimizer.add_param_group([Parameter(np.ones(1))])
    with pytest.raises(ValueError, match="Invalid momentum value in param group 1: -1"):
        optimizer.add_param_group({"params": [Parameter(np.ones(1))], "momentum": -1})
    assert len(optimizer.param_groups) == 1
    with pytest.raises(ValueError, match="all optimizer param groups should be with/without names"):
        optimizer.add_param_group({"params": [("w", Parameter(np.ones(1)))]})


def test_repr_lists_groups() -> None:
    text = repr(optim.Adam([Parameter(np.ones(2))], lr=0.01))
    assert text.startswith("Adam (\nParameter Group 0\n")
    assert "    lr: 0.01\n" in text and "    betas: (0.9, 0.999)\n" in text


def test_gradient_of_the_wrong_shape_is_refused() -> None:
    param = Parameter(np.ones((2, 3)))
    optimizer = optim.Adam([param])
    param.grad = cp.tensor(np.ones(3))
    with pytest.raises(
        ValueError,
        match=r"Adam.step: a parameter of shape \(2, 3\) has a "
        r"gradient of shape \(3,\)",
    ):
        optimizer.step()
    np.testing.assert_array_equal(param.data, np.ones((2, 3)))
