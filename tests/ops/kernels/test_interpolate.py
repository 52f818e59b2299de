"""Every implementation of interpolation in the plan's tables, called directly with the
per-axis indices and matrices of hypothesis configurations, against PyTorch and against the
reference (the gather and its np.add.at, the matrices contracted with tensordot)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import assume, given
from hypothesis import strategies as st

from convprop.ops import resample
from convprop.ops.kernels import interpolate as interpolate_kernels
from tests.ops.test_resample import _torch_nearest_gradient_is_wrong, interpolate_configs
from tests.reference import assert_close

TABLES = {
    "nearest": (resample.NEAREST_KERNELS, resample.NEAREST_GRAD_KERNELS),
    "linear": (resample.LINEAR_KERNELS, resample.LINEAR_GRAD_KERNELS),
}


@pytest.mark.parametrize("kind", sorted(TABLES))
@given(config=interpolate_configs(), seed=st.integers(0, 2**16))
def test_every_kernel_matches_torch_and_the_reference(
    kind: str, config: tuple[tuple[int, ...], dict[str, Any]], seed: int
) -> None:
    shape, kwargs = config
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal(shape), requires_grad=True)
    _, (saved_kind, input_shape, data) = resample.interpolate_forward(x.detach().numpy(), **kwargs)
    assume(saved_kind == kind)
    out = torch_F.interpolate(x, **kwargs)
    grad = rng.standard_normal(out.shape)
    out.backward(torch.tensor(grad))
    forward_table, grad_table = TABLES[kind]
    for name, forward in forward_table.items():
        ours = forward(x.detach().numpy(), data)
        assert_close(ours, out, what=f"{kind} {name} forward")
        if kind == "nearest":
            ours_grad = grad_table[name](grad, data, input_shape)
            reference = resample.reference_nearest_grad(grad, data, input_shape)
        else:
            ours_grad = grad_table[name](grad, data)
            reference = resample.reference_linear_grad(grad, data)
        assert_close(ours_grad, reference, what=f"{kind} {name} backward vs reference")
        if not _torch_nearest_gradient_is_wrong(shape, kwargs):
            assert_close(ours_grad, x.grad, what=f"{kind} {name} backward vs torch")


@pytest.mark.parametrize(
    ("index", "in_size", "repeat"),
    [([0, 0, 1, 1, 2, 2], 3, 2), ([0, 1, 2], 3, 1), ([0, 0, 1, 2], 3, 0), ([0, 1, 1], 2, 0)],
)
def test_repeat_factor_recognises_whole_number_upscaling(
    index: list[int], in_size: int, repeat: int
) -> None:
    assert interpolate_kernels.repeat_factor(np.array(index), in_size) == repeat
