"""Learning-rate schedulers, as ``torch.optim.lr_scheduler``.

A scheduler rewrites ``group['lr']`` of its optimizer's parameter groups each time its ``step()``
is called (after ``optimizer.step()``; per epoch or per batch, as the schedule intends). The
constructor records ``group['initial_lr']`` (the base learning rate) and performs the initial
step, so right after construction ``last_epoch == 0`` and the groups hold the epoch-0 rate.

Most schedules are *chainable*: each step multiplies the current ``lr`` by a factor, so two
schedulers may act on one optimizer. The recurrences are PyTorch's, so the sequences of learning
rates agree with PyTorch's to the last bits, including their small drifts from the closed forms.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import wraps
from typing import Any, Literal, SupportsFloat

from convprop.optim.optimizer import Optimizer

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "StepLR",
]

# Attributes that describe a call in progress, not the schedule: never saved.
_TRANSIENT = frozenset({"optimizer", "_get_lr_called_within_step", "_is_initial"})


def _check_optimizer(optimizer: Any) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
    return optimizer


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list[Any]:
    """One value per parameter group: a scalar is repeated, a list must have one per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. {name} has "
                f"{len(value)} values, param_groups has {len(optimizer.param_groups)}."
            )
        return list(value)
    return [value] * len(optimizer.param_groups)


def _count_optimizer_steps(optimizer: Optimizer) -> None:
    """Wrap ``optimizer.step`` so schedulers can tell whether it ran before their first step."""
    if getattr(optimizer.step, "_counted_by_scheduler", False):
        return
    method = type(optimizer).step
    optimizer_ref = weakref.ref(optimizer)  # the wrapper lives on the optimizer: avoid a cycle

    @wraps(method)
    def counted_step(*args: Any, **kwargs: Any) -> Any:
        owner = optimizer_ref()
        assert owner is not None  # the wrapper is an attribute of the live optimizer
        owner._opt_called = True  # type: ignore[attr-defined]
        return method(owner, *args, **kwargs)

    counted_step._counted_by_scheduler = True  # type: ignore[attr-defined]
    optimizer.step = counted_step  # type: ignore[method-assign]


class LRScheduler:
    """Base class of the schedulers: ``step()`` sets every group's ``lr`` to ``get_lr()``.

    Args:
        optimizer: the optimizer whose learning rates are scheduled.
        last_epoch: index of the last epoch seen; -1 (default) starts the schedule. A resumed
            scheduler (``last_epoch >= 0``) needs ``'initial_lr'`` in every group, as left by
            the original scheduler in the optimizer's (loaded) state.

    Attributes:
        base_lrs: the groups' ``initial_lr``.
        last_epoch: how many times ``step()`` has run since the start (0 after construction).
    """

    _get_lr_called_within_step: bool = False
    _is_initial: bool = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        self.optimizer = _check_optimizer(optimizer)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for number, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{number}] when "
                        f"resuming scheduler with last_epoch >= 0 (last_epoch={last_epoch}); "
                        "load the optimizer's state first, or use last_epoch=-1 for a fresh run"
                    )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        _count_optimizer_steps(optimizer)
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rates of the current ``last_epoch`` (computed inside ``step()``)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()``, one per parameter group."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance the schedule by one epoch (or batch) and write the new rates to the groups."""
        if self._step_count == 1 and not getattr(self.optimizer, "_opt_called", False):
            warnings.warn(
                "Detected call of `lr_scheduler.step()` before `optimizer.step()`. Call them "
                "in the order `optimizer.step()` then `lr_scheduler.step()`; otherwise the first "
                "value of the learning rate schedule is skipped.",
                UserWarning,
                stacklevel=2,
            )
        self._step_count += 1
        self.last_epoch += 1
        self._get_lr_called_within_step = True
        try:
            values = self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _warn_if_outside_step(self) -> None:
        if not self._get_lr_called_within_step:
            warnings.warn(
                "To get the last learning rate computed by the scheduler, please use "
                "`get_last_lr()`.",
                UserWarning,
                stacklevel=3,
            )

    def _current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Every attribute except the optimizer (plain numbers, lists, strings, dicts)."""
        return {
            key: copy.deepcopy(value)
            for key, value in self.__dict__.items()
            if key not in _TRANSIENT
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the attributes saved by ``state_dict()`` (the optimizer is not touched)."""
        if not isinstance(state_dict, Mapping):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: expected a dict, got "
                f"{type(state_dict).__name__}"
            )
        groups = len(self.optimizer.param_groups)
        for key in ("base_lrs", "_last_lr", "min_lrs"):
            saved = state_dict.get(key)
            if isinstance(saved, list) and len(saved) != groups:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: {key} has {len(saved)} entries but "
                    f"the optimizer has {groups} parameter groups"
                )
        self.__dict__.update(
            {
                key: copy.deepcopy(value)
                for key, value in state_dict.items()
                if key not in _TRANSIENT
            }
        )


class StepLR(LRScheduler):
    """Multiply every group's learning rate by ``gamma`` every ``step_size`` epochs.

    lr_epoch = lr_{epoch-1} * gamma  if epoch is a positive multiple of step_size, else
    lr_{epoch-1}; i.e. base_lr * gamma^floor(epoch / step_size) when nothing else changes lr.

    Args:
        optimizer: the wrapped optimizer.
        step_size: period of the decay, in epochs (a positive integer).
        gamma: multiplicative factor (default 0.1).
        last_epoch: index of the last epoch (default -1: start).
    """

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if not _is_int(step_size) or step_size <= 0:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_outside_step()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class MultiStepLR(LRScheduler):
    """Multiply every group's learning rate by ``gamma`` at each milestone epoch.

    lr_epoch = lr_{epoch-1} * gamma^c, where c is how many times epoch occurs in milestones;
    i.e. base_lr * gamma^(number of milestones <= epoch) when nothing else changes lr.

    Args:
        optimizer: the wrapped optimizer.
        milestones: epoch indices (increasing; a repeated milestone decays that many times).
        gamma: multiplicative factor (default 0.1).
        last_epoch: index of the last epoch (default -1: start).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Iterable[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_outside_step()
        if self.last_epoch not in self.milestones:
            return self._current_lrs()
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [lr * factor for lr in self._current_lrs()]

    def state_dict(self) -> dict[str, Any]:
        """As the base's, with ``milestones`` a plain ``{epoch: count}`` dict."""
        state = super().state_dict()
        state["milestones"] = dict(self.milestones)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """As the base's; milestone keys may be strings (as after a JSON round trip)."""
        super().load_state_dict(state_dict)
        self.milestones = Counter({int(epoch): count for epoch, count in self.milestones.items()})


class LinearLR(LRScheduler):
    """Scale the learning rate by a factor moving linearly from ``start_factor`` to ``end_factor``.

    Over the first ``total_iters`` epochs (a warm-up when start_factor < end_factor)::

        factor(epoch) = start_factor + (end_factor - start_factor) * min(epoch, total_iters)
                        / total_iters
        lr_epoch = base_lr * factor(epoch)

    computed as PyTorch does, by the chainable recurrence lr_0 = lr * start_factor and
    lr_epoch = lr_{epoch-1} * (1 + (end_factor - start_factor) / (total_iters * start_factor
    + (epoch - 1) * (end_factor - start_factor))) for 0 < epoch <= total_iters.

    Args:
        optimizer: the wrapped optimizer.
        start_factor: factor of the first epoch, in (0, 1] (default 1/3).
        end_factor: factor reached at ``total_iters``, in [0, 1] (default 1).
        total_iters: number of epochs of the linear change (default 5).
        last_epoch: index of the last epoch (default -1: start).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or equal "
                f"to 1, got start_factor={start_factor}"
            )
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError(
                f"Ending multiplicative factor expected to be between 0 and 1, got "
                f"end_factor={end_factor}"
            )
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_outside_step()
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        change = self.end_factor - self.start_factor
        factor = 1.0 + change / (
            self.total_iters * self.start_factor + (self.last_epoch - 1) * change
        )
        return [lr * factor for lr in self._current_lrs()]


class ExponentialLR(LRScheduler):
    """Multiply every group's learning rate by ``gamma`` every epoch: lr = base_lr * gamma^epoch.

    Args:
        optimizer: the wrapped optimizer.
        gamma: multiplicative factor.
        last_epoch: index of the last epoch (default -1: start).
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_outside_step()
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the base learning rate to ``eta_min`` over ``T_max`` epochs.

    The closed form (SGDR without restarts) is::

        eta_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2

    and, as in PyTorch, it is followed by the recurrence::

        eta_t = eta_min + (eta_{t-1} - eta_min) * (1 + cos(pi * t / T_max))
                                                / (1 + cos(pi * (t - 1) / T_max))

    except where the denominator vanishes (t - 1 - T_max a multiple of 2 T_max), where it steps
    eta_t = eta_{t-1} + (base_lr - eta_min) * (1 - cos(pi / T_max)) / 2. Past T_max the rate
    therefore rises again along the cosine (period 2 T_max); it is not clamped at eta_min.

    Args:
        optimizer: the wrapped optimizer.
        T_max: half-period, in epochs (positive).
        eta_min: minimum learning rate (default 0).
        last_epoch: index of the last epoch (default -1: start).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        T_max: int,  # noqa: N803 - PyTorch's name
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if isinstance(T_max, bool) or not isinstance(T_max, numbers.Real) or not T_max > 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be positive, got {T_max!r}")
        self.T_max: int = T_max
        self.eta_min: float = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_outside_step()
        epoch, t_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current_lrs()
        if self._step_count == 1 and epoch > 0:
            # Resumed at a later epoch: there is no previous rate to recur from.
            return [
                eta_min + (base_lr - eta_min) * (1 + math.cos(epoch * math.pi / t_max)) / 2
                for base_lr in self.base_lrs
            ]
        if (epoch - 1 - t_max) % (2 * t_max) == 0:
            return [
                lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
                for base_lr, lr in zip(self.base_lrs, self._current_lrs(), strict=True)
            ]
        ratio = (1 + math.cos(math.pi * epoch / t_max)) / (
            1 + math.cos(math.pi * (epoch - 1) / t_max)
        )
        return [ratio * (lr - eta_min) + eta_min for lr in self._current_lrs()]


def _total_steps(total_steps: int | None, epochs: int | None, steps_per_epoch: int | None) -> int:
    """OneCycleLR's cycle length: ``total_steps``, else ``epochs * steps_per_epoch``."""
    if total_steps is not None:
        if not _is_int(total_steps) or total_steps <= 0:
            raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        return total_steps
    if epochs is not None and steps_per_epoch is not None:
        if not _is_int(epochs) or epochs <= 0:
            raise ValueError(f"Expected positive integer epochs, but got {epochs}")
        if not _is_int(steps_per_epoch) or steps_per_epoch <= 0:
            raise ValueError(
                f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}"
            )
        return epochs * steps_per_epoch
    raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith and Topin, Super-Convergence), stepped once per batch.

    The learning rate rises from ``initial_lr = max_lr / div_factor`` to ``max_lr`` during the
    first ``pct_start * total_steps - 1`` steps, then falls to ``min_lr = initial_lr /
    final_div_factor`` at step ``total_steps - 1``. With ``three_phase`` it first falls back to
    initial_lr symmetrically (until step ``2 * pct_start * total_steps - 2``) and then anneals to
    min_lr. Within a phase from step s0 to s1, with pct = (step - s0) / (s1 - s0)::

        cos:    value = end + (start - end) / 2 * (cos(pi * pct) + 1)
        linear: value = (end - start) * pct + start

    With ``cycle_momentum`` the momentum (SGD, RMSprop) or Adam's beta1 follows the inverse
    cycle between ``max_momentum`` (at low lr) and ``base_momentum`` (at max_lr). The scheduler
    writes ``initial_lr``, ``max_lr``, ``min_lr`` (and ``max_momentum``, ``base_momentum``) into
    each group. Stepping beyond ``total_steps`` raises ``ValueError``.

    Args:
        optimizer: the wrapped optimizer.
        max_lr: peak learning rate, one for all groups or a list with one per group.
        total_steps: number of steps of the cycle; or give ``epochs`` and ``steps_per_epoch``.
        epochs: with ``steps_per_epoch``, total_steps = epochs * steps_per_epoch when
            total_steps is None.
        steps_per_epoch: see ``epochs``.
        pct_start: fraction of the cycle spent raising the rate (a float in [0, 1], default 0.3).
        anneal_strategy: 'cos' (default) or 'linear'.
        cycle_momentum: cycle momentum / beta1 inversely to the rate (default True).
        base_momentum: lower momentum bound, scalar or per group (default 0.85).
        max_momentum: upper momentum bound, scalar or per group (default 0.95).
        div_factor: initial_lr = max_lr / div_factor (default 25).
        final_div_factor: min_lr = initial_lr / final_div_factor (default 1e4).
        three_phase: use the paper's three phases instead of fastai's two (default False).
        last_epoch: index of the last batch (default -1: start).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        self.total_steps = _total_steps(total_steps, epochs, steps_per_epoch)
        if not isinstance(pct_start, float) or pct_start < 0 or pct_start > 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
            )
        self.anneal_strategy = anneal_strategy
        self._schedule_phases = self._phases(pct_start, three_phase)
        max_lrs = _per_group("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for group, group_max_lr in zip(optimizer.param_groups, max_lrs, strict=True):
                group["initial_lr"] = group_max_lr / div_factor
                group["max_lr"] = group_max_lr
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self._init_momentum(optimizer, max_momentum, base_momentum, last_epoch)
        super().__init__(optimizer, last_epoch)

    def _phases(self, pct_start: float, three_phase: bool) -> list[dict[str, Any]]:
        """Where each phase ends and which group values it goes between (the class docstring's
        two or three phases)."""
        warmup_end = float(pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        if three_phase:
            return [
                _phase(warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(
                    float(2 * pct_start * self.total_steps) - 2,
                    "max_lr",
                    "initial_lr",
                    "base_momentum",
                    "max_momentum",
                ),
                _phase(last, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        return [
            _phase(warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
            _phase(last, "max_lr", "min_lr", "base_momentum", "max_momentum"),
        ]

    def _init_momentum(
        self,
        optimizer: Optimizer,
        max_momentum: float | list[float],
        base_momentum: float | list[float],
        last_epoch: int,
    ) -> None:
        """Check that the optimizer has a momentum (or Adam's beta1) to cycle and, on a fresh
        start, write each group's bounds and start it at ``max_momentum``."""
        if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
            raise ValueError(
                "optimizer must support momentum or beta1 with `cycle_momentum` option "
                f"enabled ({type(optimizer).__name__} has neither)"
            )
        self.use_beta1 = "betas" in optimizer.defaults
        max_momentums = _per_group("max_momentum", optimizer, max_momentum)
        base_momentums = _per_group("base_momentum", optimizer, base_momentum)
        if last_epoch == -1:
            for group, group_max, group_base in zip(
                optimizer.param_groups, max_momentums, base_momentums, strict=True
            ):
                self._set_momentum(group, group_max)
                group["max_momentum"] = group_max
                group["base_momentum"] = group_base

    def _set_momentum(self, group: dict[str, Any], value: float) -> None:
        if self.use_beta1:
            group["betas"] = (value, *tuple(group["betas"])[1:])
        else:
            group["momentum"] = value

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        self._warn_if_outside_step()
        step_number = self.last_epoch
        if step_number > self.total_steps:
            raise ValueError(
                f"Tried to step {step_number} times. The specified number of total steps is "
                f"{self.total_steps}"
            )
        lrs = []
        last_phase = len(self._schedule_phases) - 1
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for number, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step_number <= end_step or number == last_phase:
                    pct = (step_number - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        momentum = self._anneal(
                            group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                        )
                        self._set_momentum(group, momentum)
                    break
                start_step = end_step
        return lrs


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _phase(
    end_step: float, start_lr: str, end_lr: str, start_momentum: str, end_momentum: str
) -> dict[str, Any]:
    """One phase of OneCycleLR: runs until ``end_step``, interpolating between group entries."""
    return {
        "end_step": end_step,
        "start_lr": start_lr,
        "end_lr": end_lr,
        "start_momentum": start_momentum,
        "end_momentum": end_momentum,
    }


class ReduceLROnPlateau(LRScheduler):
    """Reduce the learning rate when a metric has stopped improving.

    ``step(metric)`` once per epoch. A metric is an improvement when it beats the best so far by
    the threshold: in mode 'min', ``metric < best * (1 - threshold)`` ('rel') or ``metric < best
    - threshold`` ('abs'); in mode 'max', ``metric > best * (1 + threshold)`` or ``metric > best
    + threshold``. After more than ``patience`` epochs without improvement every group's lr
    becomes ``max(lr * factor, min_lr)`` (ignored if the change is at most ``eps``), then
    ``cooldown`` epochs pass during which bad epochs are not counted.

    Args:
        optimizer: the wrapped optimizer.
        mode: 'min' (default) or 'max'.
        factor: new_lr = lr * factor, with factor < 1 (default 0.1).
        patience: epochs without improvement tolerated before reducing (default 10).
        threshold: relative or absolute margin of a significant improvement (default 1e-4).
        threshold_mode: 'rel' (default) or 'abs'.
        cooldown: epochs to wait after a reduction before counting again (default 0).
        min_lr: lower bound of the rate, one for all groups or one per group (default 0).
        eps: minimal change of lr; smaller reductions are skipped (default 1e-8).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: list[float] | float = 0,
        eps: float = 1e-8,
    ) -> None:
        if factor >= 1.0:
            raise ValueError(f"Factor should be < 1.0, got factor={factor}")
        self.factor = factor
        self.optimizer = _check_optimizer(optimizer)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(
                    f"expected {len(optimizer.param_groups)} min_lrs, got {len(min_lr)}"
                )
            self.default_min_lr: float | None = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = self._current_lrs()
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _init_is_better(self, mode: str, threshold: float, threshold_mode: str) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode} is unknown! (expected 'min' or 'max')")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"threshold mode {threshold_mode} is unknown! (expected 'rel' or 'abs')"
            )
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, current: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return current < best * (1.0 - self.threshold)
        if self.mode == "min":
            return current < best - self.threshold
        if self.threshold_mode == "rel":
            return current > best * (self.threshold + 1.0)
        return current > best + self.threshold

    def step(self, metrics: SupportsFloat) -> None:  # type: ignore[override]
        """Record this epoch's metric and reduce the learning rates if it has plateaued."""
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current_lrs()

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"The number of param groups in the `optimizer` ({len(groups)}) differs from "
                    f"when `ReduceLROnPlateau` was initialized ({len(self.min_lrs)}), usually "
                    "due to a new param group being added to the optimizer. Please modify the "
                    "`min_lrs` field to match the length of the `optimizer` param groups."
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs, strict=True):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)
