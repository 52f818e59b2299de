"""RMSprop: gradient divided by a running root-mean-square of recent gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from convprop.optim.optimizer import Optimizer, ParamsT, check_non_negative, lerp_

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop`` (its single-tensor implementation).

    For every parameter theta with a gradient, with v_0 = 0, b_0 = 0, g^ave_0 = 0, at step t::

        g_t = -grad f(theta_{t-1}) if maximize else grad f(theta_{t-1})
        if weight_decay != 0:   g_t = g_t + weight_decay * theta_{t-1}
        v_t = alpha * v_{t-1} + (1 - alpha) * g_t^2
        if centered:
            g^ave_t = alpha * g^ave_{t-1} + (1 - alpha) * g_t
            avg = sqrt(v_t - (g^ave_t)^2) + eps
        else:
            avg = sqrt(v_t) + eps
        if momentum > 0:
            b_t = momentum * b_{t-1} + g_t / avg
            theta_t = theta_{t-1} - lr * b_t
        else:
            theta_t = theta_{t-1} - lr * g_t / avg

    State per parameter: ``step``, ``square_avg`` (v), ``momentum_buffer`` (b, when
    momentum > 0) and ``grad_avg`` (g^ave, when centered). Unlike SGD, the momentum buffer starts
    at zero.

    Args:
        params: parameters or parameter groups (see :class:`Optimizer`).
        lr: learning rate (default 1e-2).
        alpha: smoothing constant of the squared-gradient average (default 0.99).
        eps: added to the denominator for numerical stability (default 1e-8).
        weight_decay: L2 penalty (default 0).
        momentum: momentum factor (default 0).
        centered: normalise by an estimate of the gradient's variance (default False).
        maximize: maximise the objective instead (keyword-only).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        check_non_negative(options["lr"], "RMSprop", "lr", where, "learning rate")
        check_non_negative(options["eps"], "RMSprop", "eps", where, "epsilon value")
        check_non_negative(options["momentum"], "RMSprop", "momentum", where, "momentum value")
        check_non_negative(
            options["weight_decay"], "RMSprop", "weight_decay", where, "weight_decay value"
        )
        check_non_negative(options["alpha"], "RMSprop", "alpha", where, "alpha value")

    def _step_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        alpha = float(group["alpha"])
        eps = float(group["eps"])
        weight_decay = float(group["weight_decay"])
        momentum = float(group["momentum"])
        for param, grad in self._params_with_grad(group):
            state = self.state[param]
            if len(state) == 0:
                state["step"] = 0.0
                state["square_avg"] = np.zeros_like(param.data)
                if momentum > 0:
                    state["momentum_buffer"] = np.zeros_like(param.data)
                if group["centered"]:
                    state["grad_avg"] = np.zeros_like(param.data)
            state["step"] += 1
            if group["maximize"]:
                grad = -grad
            if weight_decay != 0:
                grad = grad + weight_decay * param.data

            square_avg: np.ndarray = state["square_avg"]
            square_avg *= alpha
            square_avg += ((1 - alpha) * grad) * grad
            if group["centered"]:
                grad_avg = state.setdefault("grad_avg", np.zeros_like(param.data))
                lerp_(grad_avg, grad, 1 - alpha)
                avg = np.sqrt(square_avg - grad_avg * grad_avg)
            else:
                avg = np.sqrt(square_avg)
            avg += eps

            if momentum > 0:
                buffer = state.setdefault("momentum_buffer", np.zeros_like(param.data))
                buffer *= momentum
                buffer += grad / avg
                param.data -= lr * buffer
            else:
                # (-lr * g) / avg: the association of PyTorch's addcdiv kernel.
                update = grad * -lr
                update /= avg
                param.data += update
