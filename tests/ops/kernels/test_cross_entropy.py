"""Every implementation of cross-entropy with class-index targets in the plan's tables, called
directly, against PyTorch (per-sample losses and dL/dz) and against the notes' formula."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

from convprop.ops import loss
from tests.reference import assert_close


@st.composite
def index_targets(draw: st.DrawFn) -> dict[str, Any]:
    classes = draw(st.integers(1, 5))
    shape = (draw(st.integers(1, 4)), classes, *draw(st.lists(st.integers(1, 3), max_size=2)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    target = rng.integers(0, classes, (shape[0], *shape[2:]))
    kept = rng.random(target.shape) >= draw(st.sampled_from([0.0, 0.3]))
    return {
        "logits": rng.standard_normal(shape) * draw(st.sampled_from([1.0, 20.0])),
        "target": target,
        "kept": kept,
        "weight": rng.uniform(0.1, 3.0, classes) if draw(st.booleans()) else None,
        "label_smoothing": draw(st.sampled_from([0.0, 0.2, 1.0])),
        "sample_grad": rng.standard_normal(target.shape) * kept,
    }


def kernel_arguments(case: dict[str, Any]) -> tuple[Any, ...]:
    """(log_probs, class_index, kept, target_weight, weight, label_smoothing)."""
    logits, target, kept, weight = case["logits"], case["target"], case["kept"], case["weight"]
    log_probs = TF.log_softmax(torch.tensor(logits), dim=1).numpy()
    class_index = np.expand_dims(target, 1)
    target_weight = (np.ones(logits.shape[1]) if weight is None else weight)[target] * kept
    return log_probs, class_index, kept, target_weight, weight, case["label_smoothing"]


def torch_per_sample(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's per-sample losses (ignored targets given ignore_index -1) and dL/dz for
    ``sample_grad`` as dL/d loss_n."""
    z = torch.tensor(case["logits"], requires_grad=True)
    target = torch.tensor(np.where(case["kept"], case["target"], -1))
    weight = None if case["weight"] is None else torch.tensor(case["weight"])
    per_sample = TF.cross_entropy(
        z,
        target,
        weight,
        ignore_index=-1,
        reduction="none",
        label_smoothing=case["label_smoothing"],
    )
    per_sample.backward(torch.tensor(case["sample_grad"]))
    return per_sample.detach().numpy(), z.grad.numpy()


@pytest.mark.parametrize("kernel", sorted(loss.CROSS_ENTROPY_KERNELS))
@given(case=index_targets())
def test_every_kernel_matches_torch_and_the_reference(kernel: str, case: dict[str, Any]) -> None:
    per_sample, grad = torch_per_sample(case)
    arguments = kernel_arguments(case)
    ours = loss.CROSS_ENTROPY_KERNELS[kernel](*arguments)
    assert_close(ours, per_sample, what=f"{kernel} loss vs torch")
    assert_close(ours, loss.reference_cross_entropy(*arguments), what=f"{kernel} vs reference")
    ours_grad = loss.CROSS_ENTROPY_GRAD_KERNELS[kernel](case["sample_grad"], *arguments)
    assert_close(ours_grad, grad, what=f"{kernel} dL/dz vs torch")
    reference_grad = loss.reference_cross_entropy_grad(case["sample_grad"], *arguments)
    assert_close(ours_grad, reference_grad, what=f"{kernel} dL/dz vs reference")


def test_the_reference_is_the_notes_softmax_minus_onehot() -> None:
    """No weights, no smoothing, the mean over N: dL/dz = (p - onehot) / N."""
    rng = np.random.default_rng(0)
    logits, target = rng.standard_normal((4, 5)), np.array([0, 3, 3, 1])
    case = {
        "logits": logits,
        "target": target,
        "kept": np.ones(4, bool),
        "weight": None,
        "label_smoothing": 0.0,
    }
    grad = loss.reference_cross_entropy_grad(np.full(4, 1 / 4), *kernel_arguments(case))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(grad, (p - np.eye(5)[target]) / 4, atol=1e-15)
