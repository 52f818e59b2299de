"""Every implementation of ReLU in the plan's tables, called directly, against PyTorch and the
notes' rule; the fast passes also in blocks of samples given explicitly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

from convprop.ops import activation
from convprop.ops.kernels import relu as relu_kernels
from convprop.ops.kernels.parallel import split_evenly
from tests.reference import assert_close

shapes = st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple)


def relu_case(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An input with exact zeros (the kink) and a gradient."""
    rng = np.random.default_rng(seed)
    z = np.asarray(rng.standard_normal(shape))
    z[rng.random(shape) < 0.2] = 0.0
    return z, np.asarray(rng.standard_normal(shape))


def torch_relu(z: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tz = torch.tensor(z, requires_grad=True)
    out = TF.relu(tz)
    out.backward(torch.tensor(grad))
    return out.detach().numpy(), tz.grad.numpy()


@pytest.mark.parametrize("kernel", sorted(activation.RELU_FORWARD_KERNELS))
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_every_forward_kernel_matches_torch(kernel: str, shape: tuple, seed: int) -> None:
    z, grad = relu_case(shape, seed)
    out, _ = torch_relu(z, grad)
    assert_close(activation.RELU_FORWARD_KERNELS[kernel](z), out, what=kernel)


@pytest.mark.parametrize("kernel", sorted(activation.RELU_BACKWARD_KERNELS))
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_every_backward_kernel_matches_torch_and_the_reference(
    kernel: str, shape: tuple, seed: int
) -> None:
    z, grad = relu_case(shape, seed)
    out, grad_z = torch_relu(z, grad)
    ours = activation.RELU_BACKWARD_KERNELS[kernel](grad, out)
    assert_close(ours, grad_z, what=f"{kernel} vs torch")
    np.testing.assert_array_equal(ours, activation.reference_relu_backward(grad, out))


@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
    block_count=st.integers(1, 5),
    seed=st.integers(0, 2**31),
)
def test_the_fast_passes_in_blocks_equal_torch(shape: tuple, block_count: int, seed: int) -> None:
    z, grad = relu_case(shape, seed)
    out, grad_z = torch_relu(z, grad)
    blocks = split_evenly(shape[0], block_count)
    assert_close(relu_kernels.forward(z, blocks), out, what="forward in blocks")
    assert_close(relu_kernels.backward(grad, out, blocks), grad_z, what="backward in blocks")


@pytest.mark.parametrize("kernel", sorted(activation.RELU_BACKWARD_KERNELS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_backward_kernel_passes_nan_and_blocks_the_rest_as_pytorch(
    kernel: str, dtype: type
) -> None:
    """A NaN output passes its gradient (PyTorch's threshold_backward), zero and negative
    outputs block it, even an infinite one."""
    out = np.array([np.nan, 0.0, -0.0, 2.0, np.inf, 0.0], dtype=dtype)
    grad = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.inf], dtype=dtype)
    result = activation.RELU_BACKWARD_KERNELS[kernel](grad, out)
    np.testing.assert_array_equal(result, [1.0, 0.0, 0.0, 4.0, 5.0, 0.0])
    assert result.dtype == dtype
