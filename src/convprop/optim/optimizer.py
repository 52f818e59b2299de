"""``Optimizer``: parameter groups, per-parameter state and checkpoints, as ``torch.optim``.

An optimizer holds ``param_groups``, a list of dicts, each with ``'params'`` (a list of
:class:`~convprop.nn.Parameter`) and every hyper-parameter of the algorithm (``lr``,
``momentum``, ...), so groups can differ (e.g. no weight decay on biases) and schedulers can change
``group['lr']`` between steps. ``state`` maps each parameter to a dict of the algorithm's buffers
(momentum, moment estimates, step count), created on the parameter's first update.

``state_dict()`` has PyTorch's structure: ``{'state': {index: {...}}, 'param_groups': [{...,
'params': [index, ...]}]}`` where a parameter's index is its position when the groups are listed
in order. Buffers are ndarrays, step counts plain floats, every other value a Python scalar, bool,
string or tuple, so a checkpoint can be written as JSON plus arrays.
"""

from __future__ import annotations

import copy
import numbers
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from convprop.autograd import Tensor, enable_grad

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]


class Optimizer:
    """Base class of every optimizer, as ``torch.optim.Optimizer``.

    Args:
        params: an iterable of parameters (Tensors, usually ``module.parameters()``), of
            ``(name, parameter)`` pairs (``module.named_parameters()``), or of dicts, each a
            parameter group: ``{'params': [...], 'lr': ..., ...}``; options missing from a group
            take the optimizer's defaults.
        defaults: the default value of every hyper-parameter of the algorithm.

    Subclasses implement ``_step_group(group)``, the update of one parameter group, and may
    implement ``_check_options(options, where)`` to validate hyper-parameters (called on the
    constructor's arguments and on every group added or loaded).
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._check_options(self.defaults, "")
        if isinstance(params, Tensor):
            raise TypeError(
                f"{self._name}: params should be an iterable of Tensors or dicts, but got a "
                f"single {type(params).__name__} (wrap it in a list)"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                f"{self._name}: optimizer parameters need to be organized in ordered "
                "collections, but the ordering of tensors in sets will change between runs. "
                "Please use a list instead."
            )
        if isinstance(params, (dict, str)) or not isinstance(params, Iterable):
            raise TypeError(
                f"{self._name}: params should be an iterable of Tensors or dicts, but got "
                f"{type(params).__name__}"
            )
        groups: list[Any] = list(params)
        if len(groups) == 0:
            raise ValueError(f"{self._name}: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------------ hooks for subclasses
    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        """Raise ``ValueError`` for an invalid hyper-parameter; ``where`` names the group."""

    def _prepare_group(self, group: dict[str, Any]) -> None:
        """Normalise a group's options in place (after defaults are filled in)."""

    def _step_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{self._name} does not implement _step_group()")

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (e.g. to unfreeze layers later).

        Options the group does not give take the optimizer's defaults. A parameter may belong
        to one group only, once.
        """
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{self._name}: param_group must be a dict, but got {type(param_group).__name__}"
            )
        if "params" not in param_group:
            raise ValueError(
                f"{self._name}: a parameter group must have a 'params' entry, got keys "
                f"{sorted(param_group)}"
            )
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                f"{self._name}: optimizer parameters need to be organized in ordered "
                "collections, but the ordering of tensors in sets will change between runs. "
                "Please use a list instead."
            )
        else:
            params = list(params)

        tensors: list[Tensor] = []
        names: list[str] = []
        for item in params:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                names.append(item[0])
                item = item[1]
            if not isinstance(item, Tensor):
                raise TypeError(
                    f"{self._name}: optimizer can only optimize Tensors (Parameters), but one "
                    f"of the params is {type(item).__name__}"
                )
            if not item.is_leaf:
                raise ValueError(f"{self._name}: can't optimize a non-leaf Tensor")
            tensors.append(item)
        if names and len(names) != len(tensors):
            raise ValueError(
                f"{self._name}: all optimizer params should be with/without names. Some param "
                "names are missing"
            )
        if len(tensors) == 0:
            raise ValueError(f"{self._name}: optimizer got an empty parameter list")

        seen: set[int] = set()
        for position, tensor in enumerate(tensors):
            if id(tensor) in seen:
                raise ValueError(
                    f"{self._name}: a parameter group contains the same parameter twice "
                    f"(position {position}, shape {tuple(tensor.shape)}); give each once"
                )
            seen.add(id(tensor))
        for other in self.param_groups:
            if ("param_names" in other) != bool(names):
                kind = "with names" if names else "without names"
                raise ValueError(
                    f"{self._name}: all optimizer param groups should be with/without names. "
                    f"cannot add param group {kind} to the optimizer"
                )
            if any(id(p) in seen for p in other["params"]):
                raise ValueError(
                    f"{self._name}: some parameters appear in more than one parameter group"
                )

        group["params"] = tensors
        if names:
            group["param_names"] = names
        for key, default in self.defaults.items():
            group.setdefault(key, default)
        self._check_options(group, f" in param group {len(self.param_groups)}")
        self._prepare_group(group)
        self.param_groups.append(group)

    # ------------------------------------------------------------------ stepping
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter: to ``None`` (default), or to zeros in place.

        With ``None`` the next ``step`` skips a parameter that gets no new gradient; with zeros
        it updates it with a zero gradient (weight decay and momentum still act).
        """
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                elif param.grad.data.flags.writeable:
                    param.grad.data.fill(0)
                else:
                    param.grad.data = np.zeros_like(param.grad.data)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, once.

        Args:
            closure: optional; re-evaluates the model (zero_grad, forward, backward) and returns
                the loss. It runs with graph recording enabled, before the update.

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _params_with_grad(self, group: dict[str, Any]) -> Iterable[tuple[Tensor, np.ndarray]]:
        """``(parameter, gradient ndarray)`` for the group's parameters that have a gradient."""
        for param in group["params"]:
            if param.grad is not None:
                grad = np.asarray(param.grad.data if isinstance(param.grad, Tensor) else param.grad)
                if grad.shape != param.shape:
                    raise ValueError(
                        f"{self._name}.step: a parameter of shape {tuple(param.shape)} has a "
                        f"gradient of shape {grad.shape}"
                    )
                yield param, grad

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, in PyTorch's structure, holding copies (not references).

        ``{'state': {index: {'step': float, 'exp_avg': ndarray, ...}}, 'param_groups': [{'lr':
        ..., ..., 'params': [index, ...]}]}``; a parameter's index is its position in the
        concatenation of the groups' parameter lists. Parameters that have no state yet (never
        updated) are absent from ``'state'``.
        """
        index_of: dict[int, int] = {}
        packed_groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for param in group["params"]:
                index_of.setdefault(id(param), len(index_of))
            packed["params"] = [index_of[id(p)] for p in group["params"]]
            packed_groups.append(packed)
        packed_state: dict[int, dict[str, Any]] = {}
        for param, param_state in self.state.items():
            if id(param) in index_of and param_state:
                packed_state[index_of[id(param)]] = {
                    key: _copy_state_value(value) for key, value in param_state.items()
                }
        return {
            "state": dict(sorted(packed_state.items())),
            "param_groups": packed_groups,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state saved by ``state_dict()`` into an optimizer built on the same parameters.

        The groups must match in number and size; parameters are matched by position. Buffers
        are copied and cast to each parameter's dtype; integer-like string keys (as a JSON round
        trip leaves them) are accepted for parameter indices. Hyper-parameters come from the
        saved groups (so a learning rate changed by a scheduler is restored).
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(
                f"{self._name}.load_state_dict: expected a dict with 'state' and 'param_groups' "
                f"entries, got {type(state_dict).__name__}"
                + (f" with keys {sorted(state_dict)}" if isinstance(state_dict, Mapping) else "")
            )
        saved_groups = copy.deepcopy(list(state_dict["param_groups"]))
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{self._name}.load_state_dict: loaded state dict has a different number of "
                f"parameter groups: {len(saved_groups)} saved, {len(self.param_groups)} in the "
                "optimizer"
            )
        id_map: dict[int, Tensor] = {}
        for number, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            saved_params = saved.get("params") if isinstance(saved, Mapping) else None
            if saved_params is None:
                raise ValueError(
                    f"{self._name}.load_state_dict: saved param group {number} has no 'params'"
                )
            if len(saved_params) != len(group["params"]):
                raise ValueError(
                    f"{self._name}.load_state_dict: loaded state dict contains a parameter group "
                    f"that doesn't match the size of optimizer's group: group {number} has "
                    f"{len(saved_params)} parameters saved but {len(group['params'])} in the "
                    "optimizer"
                )
            for index, param in zip(saved_params, group["params"], strict=True):
                id_map[_as_index(index, self._name)] = param

        new_state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for key, saved_param_state in dict(state_dict["state"]).items():
            index = _as_index(key, self._name)
            if index not in id_map:
                raise ValueError(
                    f"{self._name}.load_state_dict: state entry for parameter index {index} but "
                    f"the param groups list indices {sorted(id_map)}"
                )
            param = id_map[index]
            new_state[param] = {
                name: self._cast_state_value(name, value, param, index)
                for name, value in dict(saved_param_state).items()
            }

        new_groups = []
        for number, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
            for key, default in self.defaults.items():
                saved.setdefault(key, default)
            self._check_options(saved, f" in loaded param group {number}")
            self._prepare_group(saved)
            new_groups.append(saved)
        self.state = new_state
        self.param_groups = new_groups

    def _cast_state_value(self, name: str, value: Any, param: Tensor, index: int) -> Any:
        if name == "step":
            return float(value)
        if isinstance(value, Tensor):
            value = value.data
        if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
            # asarray first: foreign arrays (e.g. torch tensors) may not accept ``copy=``.
            array = np.array(np.asarray(value), dtype=param.dtype, copy=True)
            if array.shape != param.shape:
                raise ValueError(
                    f"{self._name}.load_state_dict: state {name!r} of parameter {index} has shape "
                    f"{array.shape} but the parameter has shape {tuple(param.shape)}"
                )
            return array
        return copy.deepcopy(value)

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for number, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {number}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _copy_state_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    return copy.deepcopy(value)


def _as_index(key: Any, name: str) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key)
    if isinstance(key, str) and key.strip().lstrip("-").isdigit():
        return int(key)
    raise ValueError(f"{name}.load_state_dict: parameter indices must be integers, got {key!r}")


# ---------------------------------------------------------------------- shared helpers
def check_real(value: Any, owner: str, name: str, where: str) -> float:
    """``value`` as a float, or TypeError naming the option when it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: {name}{where} must be a real number, got {type(value).__name__} {value!r}"
        )
    return float(value)


def check_non_negative(value: Any, owner: str, name: str, where: str, label: str) -> None:
    """``value >= 0`` (NaN refused) with PyTorch's wording, e.g. ``Invalid learning rate: -1``."""
    number = check_real(value, owner, name, where)
    if not number >= 0.0:
        raise ValueError(f"{owner}: Invalid {label}{where}: {value} ({name} must be >= 0)")


def lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """``start += weight * (end - start)`` in place, rounded as ``torch.lerp``.

    PyTorch evaluates ``start + weight * (end - start)`` when ``|weight| < 0.5`` and
    ``end - (end - start) * (1 - weight)`` otherwise; following the same branch keeps float64
    trajectories equal to PyTorch's to the last bits.
    """
    difference = end - start
    if abs(weight) < 0.5:
        difference *= weight
        start += difference
    else:
        difference *= 1.0 - weight
        np.subtract(end, difference, out=start)
