"""Helpers to compare convprop against PyTorch (the independent reference) in float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import convprop as cp

torch.set_num_threads(1)

RTOL = 1e-10


def pair(array: np.ndarray, requires_grad: bool = True) -> tuple[cp.Tensor, torch.Tensor]:
    """The same values as a convprop tensor and a torch tensor, both leaves."""
    floating = np.issubdtype(array.dtype, np.floating)
    ours = cp.tensor(array, requires_grad=requires_grad and floating)
    theirs = torch.tensor(array, requires_grad=requires_grad and floating)
    return ours, theirs


def assert_close(actual: Any, expected: Any, rtol: float = RTOL, what: str = "") -> None:
    """Equal within ``rtol`` relative to the largest finite magnitude of ``expected``; NaNs and
    infinities must sit at the same places (and infinities have the same sign)."""
    actual = np.asarray(actual.detach().numpy() if isinstance(actual, torch.Tensor) else actual)
    expected = np.asarray(
        expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    )
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype or expected.dtype.kind not in "f", (
        f"{what}: dtype {actual.dtype} != {expected.dtype}"
    )
    finite = np.abs(expected[np.isfinite(expected)]) if expected.dtype.kind in "fc" else expected
    scale = max(1.0, float(np.max(finite))) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=what)


def grad_of(tensor: Any) -> np.ndarray | None:
    grad = tensor.grad
    if grad is None:
        return None
    return grad.detach().numpy() if isinstance(grad, torch.Tensor) else grad.numpy()
