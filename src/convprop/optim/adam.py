"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from convprop.optim.optimizer import (
    Optimizer,
    ParamsT,
    check_non_negative,
    check_real,
    lerp_,
)

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (its single-tensor implementation).

    For every parameter theta with a gradient, with m_0 = v_0 = v_0^max = 0, at step t::

        g_t = -grad f(theta_{t-1}) if maximize else grad f(theta_{t-1})
        if weight_decay != 0:
            theta_{t-1} = theta_{t-1} * (1 - lr * weight_decay)   if decoupled_weight_decay
            g_t = g_t + weight_decay * theta_{t-1}                otherwise (L2 penalty)
        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2
        if amsgrad:  v_t^max = max(v_{t-1}^max, v_t);  v = v_t^max   else  v = v_t
        step_size = lr / (1 - beta1^t)
        denom = sqrt(v) / sqrt(1 - beta2^t) + eps
        theta_t = theta_{t-1} - step_size * m_t / denom

    (the bias corrections divide m by 1 - beta1^t and v by 1 - beta2^t; eps is added after the
    correction, exactly where PyTorch adds it). State per parameter: ``step`` (a float, t),
    ``exp_avg`` (m), ``exp_avg_sq`` (v), and ``max_exp_avg_sq`` (v^max) with amsgrad.

    Args:
        params: parameters or parameter groups (see :class:`Optimizer`).
        lr: learning rate (default 1e-3).
        betas: (beta1, beta2), decay rates of the moment estimates, each in [0, 1)
            (default (0.9, 0.999)).
        eps: added to the denominator for numerical stability (default 1e-8).
        weight_decay: weight decay coefficient (default 0).
        amsgrad: use the AMSGrad variant (default False).
        maximize: maximise the objective instead (keyword-only).
        decoupled_weight_decay: apply the decay to the weights directly, as AdamW (keyword-only).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        name = self._name
        check_non_negative(options["lr"], name, "lr", where, "learning rate")
        check_non_negative(options["eps"], name, "eps", where, "epsilon value")
        betas = options["betas"]
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"{name}: betas{where} must be a pair (beta1, beta2), got {betas!r}")
        for position, beta in enumerate(betas):
            value = check_real(beta, name, f"betas[{position}]", where)
            if not 0.0 <= value < 1.0:
                raise ValueError(
                    f"{name}: Invalid beta parameter at index {position}{where}: {beta} "
                    "(betas must lie in [0, 1))"
                )
        check_non_negative(
            options["weight_decay"], name, "weight_decay", where, "weight_decay value"
        )

    def _prepare_group(self, group: dict[str, Any]) -> None:
        # A JSON round trip turns the tuple into a list; keep PyTorch's tuple.
        group["betas"] = tuple(group["betas"])

    def _step_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        eps = float(group["eps"])
        weight_decay = float(group["weight_decay"])
        for param, grad in self._params_with_grad(group):
            state = self.state[param]
            if len(state) == 0:
                state["step"] = 0.0
                state["exp_avg"] = np.zeros_like(param.data)
                state["exp_avg_sq"] = np.zeros_like(param.data)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = np.zeros_like(param.data)
            exp_avg: np.ndarray = state["exp_avg"]
            exp_avg_sq: np.ndarray = state["exp_avg_sq"]
            state["step"] += 1
            step = state["step"]

            if group["maximize"]:
                grad = -grad
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    param.data *= 1 - lr * weight_decay
                else:
                    grad = grad + weight_decay * param.data

            lerp_(exp_avg, grad, 1 - beta1)
            exp_avg_sq *= beta2
            exp_avg_sq += ((1 - beta2) * grad) * grad

            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2**0.5

            if group["amsgrad"]:
                max_exp_avg_sq = state.get("max_exp_avg_sq")
                if max_exp_avg_sq is None:  # amsgrad switched on after earlier steps
                    max_exp_avg_sq = state["max_exp_avg_sq"] = np.zeros_like(param.data)
                np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
                second_moment = max_exp_avg_sq
            else:
                second_moment = exp_avg_sq
            denom = np.sqrt(second_moment)
            denom /= bias_correction2_sqrt
            denom += eps
            # (-step_size * m) / denom: the association of PyTorch's addcdiv kernel.
            update = exp_avg * -step_size
            update /= denom
            param.data += update


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    The decay shrinks the weights directly instead of entering the moment estimates::

        theta_{t-1} = theta_{t-1} * (1 - lr * weight_decay)

    then the Adam update of :class:`Adam` without the L2 term (see its docstring for the rule).
    Same arguments as :class:`Adam`, but ``weight_decay`` defaults to 1e-2.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )

    def _prepare_group(self, group: dict[str, Any]) -> None:
        super()._prepare_group(group)
        group["decoupled_weight_decay"] = True
