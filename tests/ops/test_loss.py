"""Losses against PyTorch (values and every gradient), finite differences and the notes' formula."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convprop as cp
import convprop.nn.functional as F
from convprop.autograd import gradcheck
from convprop.ops import loss as loss_ops
from convprop.ops.algorithm import kernels_used, use_algorithm
from tests.reference import assert_close, grad_of

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])
# A mean over targets that are all ignored is NaN in both libraries; assert_close's scale then
# takes the maximum of an all-NaN array.
pytestmark = pytest.mark.filterwarnings("ignore:All-NaN axis encountered:RuntimeWarning")


def both(array: np.ndarray | None, requires_grad: bool) -> tuple[Any, Any]:
    if array is None:
        return None, None
    return (
        cp.tensor(array, requires_grad=requires_grad),
        torch.tensor(array, requires_grad=requires_grad),
    )


def compare_loss(
    ours_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    arrays: dict[str, np.ndarray | None],
    differentiable: tuple[str, ...],
    seed: int,
) -> None:
    """Call both libraries with keyword ``arrays``; compare the loss and every gradient."""
    ours, theirs = {}, {}
    for name, array in arrays.items():
        ours[name], theirs[name] = both(array, name in differentiable)
    ours_out, torch_out = ours_fn(**ours), torch_fn(**theirs)
    assert ours_out.dtype == torch_out.numpy(force=True).dtype
    assert_close(ours_out.numpy(), torch_out, what="loss")
    grad = np.asarray(np.random.default_rng(seed + 1).standard_normal(torch_out.shape))
    ours_out.backward(grad)
    torch_out.backward(torch.tensor(grad))
    for name in differentiable:
        if arrays[name] is None:
            continue
        assert_close(grad_of(ours[name]), grad_of(theirs[name]), what=f"gradient of {name}")


@st.composite
def classification(draw: Any, probabilities: bool = False) -> dict[str, Any]:
    """Input (N, C, *d) or unbatched (C,), a target, a class weight, ignore_index."""
    unbatched = draw(st.booleans())
    classes = draw(st.integers(1, 5))
    spatial = () if unbatched else draw(st.lists(st.integers(1, 3), max_size=2).map(tuple))
    batch = () if unbatched else (draw(st.integers(1, 3)),)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    shape = batch + (classes,) + spatial
    x = rng.standard_normal(shape) * draw(st.sampled_from([1.0, 5.0, 50.0]))
    weight = rng.uniform(0.1, 3.0, classes) if draw(st.booleans()) else None
    if probabilities:
        target = rng.dirichlet(np.ones(classes), size=batch + spatial)
        target = np.moveaxis(target, -1, 0 if unbatched else 1)
        if draw(st.booleans()):
            target = rng.uniform(0, 1, shape)  # unnormalised soft targets are allowed too
        return {"input": x, "target": target, "weight": weight}
    target = np.asarray(rng.integers(0, classes, batch + spatial))
    ignore_index = draw(st.sampled_from([-100, 0, classes - 1, 7]))
    ignored = rng.random(target.shape) < draw(st.sampled_from([0.0, 0.3]))
    target = np.where(ignored, ignore_index, target)
    return {"input": x, "target": target, "weight": weight, "ignore_index": ignore_index}


# ------------------------------------------------------------------------------- cross_entropy
@given(
    case=classification(),
    reduction=REDUCTIONS,
    label_smoothing=st.sampled_from([0.0, 0.0, 0.1, 0.73, 1.0]),
    seed=st.integers(0, 1000),
)
def test_cross_entropy_class_indices_match_torch(
    case: dict[str, Any], reduction: str, label_smoothing: float, seed: int
) -> None:
    ignore_index = case.pop("ignore_index")
    options = {
        "ignore_index": ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
    }
    compare_loss(
        lambda **a: F.cross_entropy(**a, **options),
        lambda **a: TF.cross_entropy(**a, **options),
        case,
        ("input",),
        seed,
    )


@given(
    case=classification(probabilities=True),
    reduction=REDUCTIONS,
    label_smoothing=st.sampled_from([0.0, 0.25, 1.0]),
    seed=st.integers(0, 1000),
)
def test_cross_entropy_class_probabilities_match_torch(
    case: dict[str, Any], reduction: str, label_smoothing: float, seed: int
) -> None:
    options = {"reduction": reduction, "label_smoothing": label_smoothing}
    compare_loss(
        lambda **a: F.cross_entropy(**a, **options),
        lambda **a: TF.cross_entropy(**a, **options),
        case,
        ("input", "target", "weight"),
        seed,
    )


def test_cross_entropy_gradient_is_softmax_minus_onehot() -> None:
    """The notes' result: dDiv/dz = softmax(z) - onehot(y), averaged over the batch."""
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((4, 5)), np.array([0, 3, 3, 1])
    z = cp.tensor(logits, requires_grad=True)
    F.cross_entropy(z, cp.tensor(labels)).backward()
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(z.grad.numpy(), (softmax - np.eye(5)[labels]) / 4, atol=1e-15)


def test_cross_entropy_weighted_mean_divides_by_target_weights() -> None:
    logits, labels, weight = np.zeros((3, 2)), np.array([0, 1, 1]), np.array([1.0, 3.0])
    loss = F.cross_entropy(cp.tensor(logits), cp.tensor(labels), cp.tensor(weight))
    np.testing.assert_allclose(loss.item(), np.log(2) * (1 + 3 + 3) / (1 + 3 + 3))
    per_sample = F.cross_entropy(
        cp.tensor(logits), cp.tensor(labels), cp.tensor(weight), reduction="none"
    )
    np.testing.assert_allclose(per_sample.numpy(), np.log(2) * np.array([1.0, 3.0, 3.0]))


def test_cross_entropy_stable_for_huge_logits() -> None:
    logits = np.array([[1000.0, -1000.0, 0.0], [-1e308, 1e308, 0.0]])
    loss = F.cross_entropy(cp.tensor(logits), cp.tensor(np.array([1, 1])), reduction="none")
    expected = TF.cross_entropy(torch.tensor(logits), torch.tensor([1, 1]), reduction="none")
    np.testing.assert_array_equal(loss.numpy(), expected.numpy())
    assert np.isfinite(loss.numpy()).all()


def test_cross_entropy_all_ignored_and_empty_batch_as_torch() -> None:
    logits = np.random.default_rng(1).standard_normal((3, 4))
    for smoothing in (0.0, 0.2):
        compare_loss(
            lambda smoothing=smoothing, **a: F.cross_entropy(**a, label_smoothing=smoothing),
            lambda smoothing=smoothing, **a: TF.cross_entropy(**a, label_smoothing=smoothing),
            {"input": logits, "target": np.full(3, -100)},
            ("input",),
            0,
        )
    for target in (np.zeros(0, dtype=np.int64), np.zeros((0, 4))):
        compare_loss(
            F.cross_entropy,
            TF.cross_entropy,
            {"input": np.zeros((0, 4)), "target": target},
            ("input",),
            0,
        )


def test_cross_entropy_gradcheck() -> None:
    rng = np.random.default_rng(2)
    logits = cp.tensor(rng.standard_normal((2, 3, 2)), requires_grad=True)
    labels = cp.tensor(np.array([[0, 2], [1, -100]]))
    weight = cp.tensor(np.array([0.5, 2.0, 1.5]))
    assert gradcheck(lambda z: F.cross_entropy(z, labels, weight, label_smoothing=0.3), [logits])
    soft = cp.tensor(rng.uniform(0, 1, (2, 3, 2)), requires_grad=True)
    class_weight = cp.tensor(np.array([0.5, 2.0, 1.5]), requires_grad=True)
    assert gradcheck(
        lambda z, d, w: F.cross_entropy(z, d, w, label_smoothing=0.3, reduction="sum"),
        [logits, soft, class_weight],
    )


def test_cross_entropy_keeps_float32() -> None:
    logits = cp.tensor(
        np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32), requires_grad=True
    )
    loss = F.cross_entropy(logits, cp.tensor(np.array([0, 1, 2, 1])), label_smoothing=0.1)
    assert loss.dtype == np.float32
    loss.backward()
    assert logits.grad.dtype == np.float32
    soft = F.cross_entropy(logits, cp.tensor(np.full((4, 3), 1 / 3, dtype=np.float32)))
    assert soft.dtype == np.float32


def test_legacy_size_average_and_reduce() -> None:
    logits, labels = (
        cp.tensor(np.random.default_rng(4).standard_normal((3, 2))),
        cp.tensor(np.array([0, 1, 1])),
    )
    total = F.cross_entropy(logits, labels, reduction="sum").item()
    assert F.cross_entropy(logits, labels, size_average=False).item() == total
    assert F.cross_entropy(logits, labels, reduce=False).shape == (3,)
    assert F.nll_loss(logits, labels, size_average=True).item() == pytest.approx(
        F.nll_loss(logits, labels).item()
    )


def test_cross_entropy_errors() -> None:
    logits = cp.tensor(np.zeros((4, 3)))
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: target contains class 5, but input has "
        r"3 classes \(class indices must lie in \[0, 2\] or "
        r"equal ignore_index=-100\)",
    ):
        F.cross_entropy(logits, cp.tensor(np.array([0, 1, 5, 1])))
    with pytest.raises(ValueError, match=r"cross_entropy: target contains class -3, but input"):
        F.cross_entropy(logits, cp.tensor(np.array([0, 1, -3, 1])))
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: target of class indices must have shape "
        r"\(4,\) for input of shape \(4, 3\) .* got shape \(3,\)",
    ):
        F.cross_entropy(logits, cp.tensor(np.array([0, 1, 1])))
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: target of class probabilities must have "
        r"the input's shape \(4, 3\), got shape \(4, 2\)",
    ):
        F.cross_entropy(logits, cp.tensor(np.zeros((4, 2))))
    with pytest.raises(
        TypeError,
        match=r"cross_entropy: target must hold class indices .* "
        r"got bool",
    ):
        F.cross_entropy(logits, cp.tensor(np.array([True, False, True, True])))
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: weight must hold one weight per class, "
        r"shape \(3,\) .* got shape \(2,\)",
    ):
        F.cross_entropy(logits, cp.tensor(np.array([0, 1, 2, 1])), cp.tensor(np.ones(2)))
    with pytest.raises(TypeError, match=r"cross_entropy: weight is float32 but input is float64"):
        F.cross_entropy(
            logits, cp.tensor(np.array([0, 1, 2, 1])), cp.tensor(np.ones(3, dtype=np.float32))
        )
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: label_smoothing must be between 0.0 and "
        r"1.0, got 1.5",
    ):
        F.cross_entropy(logits, cp.tensor(np.array([0, 1, 2, 1])), label_smoothing=1.5)
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: reduction must be 'mean', 'sum' or "
        r"'none', got 'avg'",
    ):
        F.cross_entropy(logits, cp.tensor(np.array([0, 1, 2, 1])), reduction="avg")
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: ignore_index is not supported for "
        r"class-probability .* got ignore_index=1",
    ):
        F.cross_entropy(logits, cp.tensor(np.zeros((4, 3))), ignore_index=1)
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: the loss is not differentiable with "
        r"respect to weight",
    ):
        F.cross_entropy(
            logits, cp.tensor(np.array([0, 1, 2, 1])), cp.tensor(np.ones(3), requires_grad=True)
        )
    with pytest.raises(ValueError, match=r"cross_entropy: input must be \(C,\), \(N, C\) or"):
        F.cross_entropy(cp.tensor(np.array(1.0)), cp.tensor(np.array(0)))
    with pytest.raises(TypeError, match=r"cross_entropy: input must have a floating-point dtype"):
        F.cross_entropy(cp.tensor(np.zeros((2, 3), dtype=np.int64)), cp.tensor(np.array([0, 1])))


# ------------------------------------------------------------------------------------ nll_loss
@given(case=classification(), reduction=REDUCTIONS, seed=st.integers(0, 1000))
def test_nll_loss_matches_torch(case: dict[str, Any], reduction: str, seed: int) -> None:
    options = {"ignore_index": case.pop("ignore_index"), "reduction": reduction}
    compare_loss(
        lambda **a: F.nll_loss(**a, **options),
        lambda **a: TF.nll_loss(**a, **options),
        case,
        ("input",),
        seed,
    )


def test_nll_loss_of_log_softmax_is_cross_entropy_and_gradcheck() -> None:
    rng = np.random.default_rng(5)
    logits = cp.tensor(rng.standard_normal((3, 4, 2)), requires_grad=True)
    labels = cp.tensor(np.array([[0, 3], [2, 2], [1, -100]]))
    np.testing.assert_allclose(
        F.nll_loss(F.log_softmax(logits, 1), labels).item(),
        F.cross_entropy(logits, labels).item(),
        rtol=1e-14,
    )
    weight = cp.tensor(np.array([1.0, 0.5, 2.0, 1.5]))
    assert gradcheck(lambda z: F.nll_loss(z, labels, weight), [logits])
    single = F.nll_loss(cp.tensor(np.zeros((2, 3), dtype=np.float32)), cp.tensor(np.array([0, 2])))
    assert single.dtype == np.float32


def test_nll_loss_errors() -> None:
    log_probs = cp.tensor(np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"nll_loss: target must hold class indices .* float64"):
        F.nll_loss(log_probs, cp.tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"nll_loss: target contains class 3, but input has 3"):
        F.nll_loss(log_probs, cp.tensor(np.array([0, 3])))
    with pytest.raises(
        ValueError,
        match=r"nll_loss: the loss is not differentiable with respect "
        r"to weight",
    ):
        F.nll_loss(
            log_probs, cp.tensor(np.array([0, 1])), cp.tensor(np.ones(3), requires_grad=True)
        )


# ------------------------------------------------------------------------------------ mse_loss
@given(
    shape=st.lists(st.integers(1, 4), max_size=3).map(tuple),
    reduction=REDUCTIONS,
    weighted=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_mse_loss_matches_torch(
    shape: tuple[int, ...], reduction: str, weighted: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    arrays = {
        "input": np.asarray(rng.standard_normal(shape)),
        "target": np.asarray(rng.standard_normal(shape)),
        "weight": np.asarray(rng.uniform(0.1, 2, shape)) if weighted else None,
    }
    compare_loss(
        lambda **a: F.mse_loss(**a, reduction=reduction),
        lambda **a: TF.mse_loss(**a, reduction=reduction),
        arrays,
        ("input", "target", "weight") if weighted else ("input", "target"),
        seed,
    )


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_mse_loss_broadcast_target_warns_as_torch() -> None:
    rng = np.random.default_rng(6)
    arrays = {"input": rng.standard_normal((3, 4)), "target": rng.standard_normal((3, 1))}
    with pytest.warns(
        UserWarning,
        match=r"mse_loss: using a target size \(3, 1\) that is "
        r"different to the input size \(3, 4\)",
    ):
        compare_loss(F.mse_loss, TF.mse_loss, arrays, ("input", "target"), 0)


def test_mse_loss_gradcheck_float32_and_errors() -> None:
    rng = np.random.default_rng(7)
    x, d, w = (cp.tensor(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(3))
    assert gradcheck(lambda a, b, c: F.mse_loss(a, b, weight=c), [x, d, w])
    single = F.mse_loss(
        cp.tensor(np.ones(3, dtype=np.float32)), cp.tensor(np.zeros(3, dtype=np.float32))
    )
    assert single.dtype == np.float32 and single.item() == 1.0
    integer_target = F.mse_loss(cp.tensor(np.ones(3, dtype=np.float32)), cp.tensor(np.arange(3)))
    assert integer_target.dtype == np.float32 and integer_target.item() == pytest.approx(2 / 3)
    with pytest.raises(
        ValueError,
        match=r"mse_loss: target of shape \(5, 1\) does not broadcast "
        r"against input of shape \(4, 3\)",
    ):
        F.mse_loss(cp.tensor(np.ones((4, 3))), cp.tensor(np.ones((5, 1))))
    with pytest.raises(ValueError, match=r"mse_loss: weight must have the input's shape \(4, 3\)"):
        F.mse_loss(
            cp.tensor(np.ones((4, 3))), cp.tensor(np.ones((4, 3))), weight=cp.tensor(np.ones(3))
        )
    with pytest.raises(TypeError, match=r"mse_loss: input must have a floating-point dtype"):
        F.mse_loss(cp.tensor(np.ones(3, dtype=np.int64)), cp.tensor(np.ones(3)))


# ---------------------------------------------------------- binary_cross_entropy_with_logits
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    reduction=REDUCTIONS,
    weight=st.sampled_from(["none", "full", "last", "first"]),
    pos_weight=st.sampled_from(["none", "last", "scalar"]),
    scale=st.sampled_from([1.0, 40.0]),
    seed=st.integers(0, 2**31),
)
def test_binary_cross_entropy_with_logits_matches_torch(
    shape: tuple[int, ...], reduction: str, weight: str, pos_weight: str, scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    weight_shapes = {
        "full": shape,
        "last": shape[-1:],
        "first": shape[:1] + (1,) * (len(shape) - 1),
    }
    pos_weight_shapes = {"last": shape[-1:], "scalar": ()}
    arrays = {
        "input": rng.standard_normal(shape) * scale,
        "target": rng.uniform(0, 1, shape),
        "weight": None
        if weight == "none"
        else np.asarray(rng.uniform(0.1, 2, weight_shapes[weight])),
        "pos_weight": None
        if pos_weight == "none"
        else np.asarray(rng.uniform(0.1, 3, pos_weight_shapes[pos_weight])),
    }
    compare_loss(
        lambda **a: F.binary_cross_entropy_with_logits(**a, reduction=reduction),
        lambda **a: TF.binary_cross_entropy_with_logits(**a, reduction=reduction),
        arrays,
        ("input", "target"),
        seed,
    )


def test_binary_cross_entropy_with_logits_stable_gradcheck_float32() -> None:
    logits = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    loss = F.binary_cross_entropy_with_logits(
        cp.tensor(logits), cp.tensor(np.ones(5) * 0.5), reduction="none"
    )
    assert np.isfinite(loss.numpy()).all()
    rng = np.random.default_rng(8)
    x, d = (cp.tensor(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(2))
    pos_weight = cp.tensor(np.array([0.5, 2.0, 3.0]))
    assert gradcheck(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, pos_weight=pos_weight), [x, d]
    )
    single = F.binary_cross_entropy_with_logits(
        cp.tensor(np.zeros(3, dtype=np.float32)), cp.tensor(np.ones(3, dtype=np.float32))
    )
    assert single.dtype == np.float32


def test_binary_cross_entropy_with_logits_errors() -> None:
    x = cp.tensor(np.zeros((4, 3)))
    with pytest.raises(
        ValueError,
        match=r"binary_cross_entropy_with_logits: target must have the "
        r"input's shape \(4, 3\), got shape \(4, 1\)",
    ):
        F.binary_cross_entropy_with_logits(x, cp.tensor(np.zeros((4, 1))))
    with pytest.raises(
        TypeError,
        match=r"binary_cross_entropy_with_logits: target must have a "
        r"floating-point dtype .* got int64",
    ):
        F.binary_cross_entropy_with_logits(x, cp.tensor(np.zeros((4, 3), dtype=np.int64)))
    with pytest.raises(
        ValueError,
        match=r"binary_cross_entropy_with_logits: pos_weight of shape "
        r"\(2,\) does not broadcast to the input's shape",
    ):
        F.binary_cross_entropy_with_logits(
            x, cp.tensor(np.zeros((4, 3))), pos_weight=cp.tensor(np.ones(2))
        )
    with pytest.raises(
        ValueError,
        match=r"binary_cross_entropy_with_logits: the loss is not "
        r"differentiable with respect to pos_weight",
    ):
        F.binary_cross_entropy_with_logits(
            x, cp.tensor(np.zeros((4, 3))), pos_weight=cp.tensor(np.ones(3), requires_grad=True)
        )


# ------------------------------------------------------------- cross_entropy's plan, reference
def test_the_cross_entropy_plan_gathers_the_target_and_the_reference_on_request() -> None:
    with use_algorithm("fast"):
        assert loss_ops.plan_cross_entropy() == "target_gather"
    with use_algorithm("reference"):
        assert loss_ops.plan_cross_entropy() == "reference"


def test_the_cross_entropy_reference_path_is_really_taken() -> None:
    rng = np.random.default_rng(12)
    logits, labels = rng.standard_normal((6, 4, 3)), rng.integers(0, 4, (6, 3))
    labels[0, 0] = -100
    weight = rng.uniform(0.5, 2.0, 4)

    def run() -> tuple[np.ndarray, np.ndarray]:
        z = cp.tensor(logits, requires_grad=True)
        value = F.cross_entropy(z, cp.tensor(labels), cp.tensor(weight), label_smoothing=0.1)
        value.backward()
        return value.numpy(), z.grad.numpy()

    with use_algorithm("reference"), kernels_used() as used:
        reference = run()
    assert dict(used) == {
        "cross_entropy.forward.reference": 1,
        "cross_entropy.backward.reference": 1,
    }
    with use_algorithm("fast"), kernels_used() as used:
        fast = run()
    assert set(used) == {
        "cross_entropy.forward.target_gather",
        "cross_entropy.backward.target_gather",
    }
    for a, b in zip(reference, fast, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
