"""Stochastic gradient descent, optionally with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from convprop.optim.optimizer import Optimizer, ParamsT, check_non_negative, check_real

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``.

    For every parameter theta with a gradient, at step t = 1, 2, ...::

        g_t = -grad f(theta_{t-1}) if maximize else grad f(theta_{t-1})
        if weight_decay != 0:   g_t = g_t + weight_decay * theta_{t-1}
        if momentum != 0:
            b_t = g_t                                   if t == 1 (no dampening on the first step)
            b_t = momentum * b_{t-1} + (1 - dampening) * g_t   otherwise
            g_t = g_t + momentum * b_t                  if nesterov
            g_t = b_t                                   otherwise
        theta_t = theta_{t-1} - lr * g_t

    The momentum buffer b is ``state[p]['momentum_buffer']``; its "first step" is the first
    update this parameter receives. Note the learning rate multiplies the whole buffer, unlike
    Sutskever et al.'s ``v = mu * v + lr * g``, so changing ``lr`` rescales past momentum too.

    Args:
        params: parameters or parameter groups (see :class:`Optimizer`).
        lr: learning rate (default 1e-3).
        momentum: momentum factor mu (default 0).
        dampening: dampening tau of the momentum (default 0).
        weight_decay: L2 penalty lambda, added to the gradient (default 0).
        nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
        maximize: maximise the objective instead of minimising it (keyword-only).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        check_non_negative(options["lr"], "SGD", "lr", where, "learning rate")
        check_non_negative(options["momentum"], "SGD", "momentum", where, "momentum value")
        check_real(options["dampening"], "SGD", "dampening", where)
        check_non_negative(
            options["weight_decay"], "SGD", "weight_decay", where, "weight_decay value"
        )
        if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ValueError(
                f"SGD: Nesterov momentum requires a momentum and zero dampening{where}, got "
                f"momentum={options['momentum']}, dampening={options['dampening']}"
            )

    def _step_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        momentum = float(group["momentum"])
        dampening = float(group["dampening"])
        weight_decay = float(group["weight_decay"])
        for param, grad in self._params_with_grad(group):
            # Python-float coefficients keep float32 parameters in float32 (NumPy's weak scalars).
            direction = -grad if group["maximize"] else grad
            if weight_decay != 0:
                direction = direction + weight_decay * param.data
            if momentum != 0:
                state = self.state[param]
                buffer = state.get("momentum_buffer")
                if buffer is None:
                    buffer = np.array(direction, dtype=param.dtype, copy=True)
                    state["momentum_buffer"] = buffer
                else:
                    buffer *= momentum
                    buffer += (1 - dampening) * direction
                if group["nesterov"]:
                    direction = direction + momentum * buffer
                else:
                    direction = buffer
            param.data -= lr * direction
