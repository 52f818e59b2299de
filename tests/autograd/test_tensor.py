"""Tensor arithmetic, reductions and shape ops against PyTorch (float64, values and gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import convprop as cp
from tests.reference import assert_close, grad_of, pair

finite = st.floats(-3, 3, allow_nan=False, width=64)


def arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, shape, elements=finite)


broadcast_pairs = hnp.mutually_broadcastable_shapes(
    num_shapes=2, min_dims=0, max_dims=4, max_side=4
)


def check_binary(op, a: np.ndarray, b: np.ndarray) -> None:
    (ours_a, torch_a), (ours_b, torch_b) = pair(a), pair(b)
    ours, theirs = op(ours_a, ours_b), op(torch_a, torch_b)
    assert_close(ours.numpy(), theirs, what="forward")
    seed = np.cos(np.arange(ours.data.size, dtype=np.float64)).reshape(ours.shape)
    ours.backward(seed)
    theirs.backward(torch.tensor(seed))
    assert_close(grad_of(ours_a), grad_of(torch_a), what="grad a")
    assert_close(grad_of(ours_b), grad_of(torch_b), what="grad b")


@pytest.mark.parametrize(
    "op",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a * b,
        lambda a, b: a / (b * b + 0.5),
        lambda a, b: (a * a + 0.5) ** b,
        lambda a, b: (
            cp.where(a > b, a, b) if isinstance(a, cp.Tensor) else torch.where(a > b, a, b)
        ),
    ],
    ids=["add", "sub", "mul", "div", "pow", "where"],
)
@given(data=st.data(), shapes=broadcast_pairs)
def test_broadcast_binary_ops_match_torch(op, data, shapes) -> None:
    shape_a, shape_b = shapes.input_shapes
    check_binary(op, data.draw(arrays(shape_a)), data.draw(arrays(shape_b)))


@given(
    data=st.data(),
    batch=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
    m=st.integers(1, 4),
    k=st.integers(1, 4),
    n=st.integers(1, 4),
    vector_a=st.booleans(),
    vector_b=st.booleans(),
)
def test_matmul_matches_torch(data, batch, m, k, n, vector_a, vector_b) -> None:
    shape_a = (k,) if vector_a else batch + (m, k)
    shape_b = (k,) if vector_b else (k, n)
    check_binary(lambda a, b: a @ b, data.draw(arrays(shape_a)), data.draw(arrays(shape_b)))


@pytest.mark.parametrize(
    "name", ["exp", "log", "sqrt", "abs", "neg", "clamp", "square", "rsub", "rdiv", "scalar_pow"]
)
@given(data=st.data(), shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
def test_unary_ops_match_torch(name, data, shape) -> None:
    x = data.draw(arrays(shape))
    if name in ("log", "sqrt"):
        x = np.abs(x) + 0.1
    ops = {
        "exp": lambda t: t.exp(),
        "log": lambda t: t.log(),
        "sqrt": lambda t: t.sqrt(),
        "abs": lambda t: t.abs(),
        "neg": lambda t: -t,
        "clamp": lambda t: t.clamp(-1.0, 0.5),
        "square": lambda t: t**2,
        "rsub": lambda t: 2.0 - t,
        "rdiv": lambda t: 1.5 / (t * t + 1.0),
        "scalar_pow": lambda t: 2.0**t,
    }
    ours_x, torch_x = pair(x)
    ours, theirs = ops[name](ours_x), ops[name](torch_x)
    assert_close(ours.numpy(), theirs, what="forward")
    seed = np.linspace(-1, 1, ours.data.size).reshape(ours.shape)
    ours.backward(seed)
    theirs.backward(torch.tensor(seed))
    assert_close(grad_of(ours_x), grad_of(torch_x), what="grad")


@pytest.mark.parametrize("method", ["relu", "sigmoid", "tanh", "softmax", "log_softmax"])
def test_activation_methods_match_torch(method: str) -> None:
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    ours_x, torch_x = pair(x)
    args = (1,) if "softmax" in method else ()
    ours, theirs = getattr(ours_x, method)(*args), getattr(torch_x, method)(*args)
    assert_close(ours.numpy(), theirs)
    (ours * ours).sum().backward()
    (theirs * theirs).sum().backward()
    assert_close(grad_of(ours_x), grad_of(torch_x))


@pytest.mark.parametrize("reduction", ["sum", "mean", "amax"])
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=4),
    keepdim=st.booleans(),
)
def test_reductions_match_torch(reduction, data, shape, keepdim) -> None:
    # Few distinct values, so that max has ties (their gradient is shared evenly).
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([-1.0, 0.0, 2.0, 0.5])))
    dims = data.draw(
        st.one_of(
            st.none(),
            st.lists(
                st.integers(-len(shape), len(shape) - 1),
                min_size=1,
                max_size=len(shape),
                unique_by=lambda d: d % len(shape),
            ).map(tuple),
        )
    )
    ours_x, torch_x = pair(x)
    if dims is None:
        ours, theirs = getattr(ours_x, reduction)(), getattr(torch_x, reduction)()
    else:
        ours = getattr(ours_x, reduction)(dims, keepdim)
        theirs = getattr(torch_x, reduction)(dims, keepdim)
    assert_close(ours.numpy(), theirs, what="forward")
    seed = np.linspace(0.5, 2, ours.data.size).reshape(ours.shape)
    ours.backward(seed)
    theirs.backward(torch.tensor(seed))
    assert_close(grad_of(ours_x), grad_of(torch_x), what="grad")


@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
    keepdim=st.booleans(),
    use_min=st.booleans(),
)
def test_max_min_with_dim_match_torch_indices_and_grads(data, shape, keepdim, use_min) -> None:
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([-1.0, 0.0, 3.0])))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    ours_x, torch_x = pair(x)
    name = "min" if use_min else "max"
    ours, theirs = getattr(ours_x, name)(dim, keepdim), getattr(torch_x, name)(dim, keepdim)
    assert_close(ours.values.numpy(), theirs.values, what="values")
    np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
    seed = np.linspace(0.5, 2, ours.values.data.size).reshape(ours.values.shape)
    ours.values.backward(seed)
    theirs.values.backward(torch.tensor(seed))
    assert_close(grad_of(ours_x), grad_of(torch_x), what="grad")


def test_max_propagates_nan_like_torch() -> None:
    x = np.array([[1.0, np.nan, 3.0], [4.0, 2.0, 0.0]])
    ours_x, torch_x = pair(x)
    ours, theirs = ours_x.max(1), torch_x.max(1)
    assert_close(ours.values.numpy(), theirs.values, what="values")
    np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
    assert np.isnan(ours_x.max().item())


@given(data=st.data(), shape=hnp.array_shapes(min_dims=2, max_dims=4, max_side=4))
def test_shape_ops_match_torch(data, shape) -> None:
    x = data.draw(arrays(shape))
    perm = data.draw(st.permutations(range(len(shape))))
    ours_x, torch_x = pair(x)

    def chain(t):
        moved = t.permute(*perm).transpose(0, -1)
        flat = moved.flatten(1)
        reshaped = flat.reshape(-1).view(flat.shape)
        return (reshaped.unsqueeze(1).squeeze(1)[:, ::2] * 3).T

    ours, theirs = chain(ours_x), chain(torch_x)
    assert_close(ours.numpy(), theirs, what="forward")
    seed = np.arange(ours.data.size, dtype=np.float64).reshape(ours.shape)
    ours.backward(seed)
    theirs.backward(torch.tensor(seed))
    assert_close(grad_of(ours_x), grad_of(torch_x), what="grad")


def test_indexing_with_repeated_integer_indices_accumulates() -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    ours_x, torch_x = pair(x)
    index = np.array([0, 2, 0, 0])
    ours = ours_x[cp.tensor(index), 1:]
    theirs = torch_x[torch.tensor(index), 1:]
    assert_close(ours.numpy(), theirs)
    ours.sum().backward()
    theirs.sum().backward()
    assert_close(grad_of(ours_x), grad_of(torch_x))
    assert ours_x.grad.numpy()[0, 1] == 3.0


@given(data=st.data(), count=st.integers(1, 3), dim=st.integers(-3, 2))
def test_cat_and_stack_match_torch(data, count, dim) -> None:
    base = (2, 3, 2)
    inputs = []
    for i in range(count):
        shape = list(base)
        shape[dim % 3] = i + 1
        inputs.append(data.draw(arrays(tuple(shape))))
    ours_in, torch_in = zip(*(pair(a) for a in inputs), strict=True)
    ours, theirs = cp.cat(list(ours_in), dim), torch.cat(list(torch_in), dim)
    assert_close(ours.numpy(), theirs)
    ours_stacked = cp.stack([ours_in[0], ours_in[0] * 2], dim)
    torch_stacked = torch.stack([torch_in[0], torch_in[0] * 2], dim)
    assert_close(ours_stacked.numpy(), torch_stacked)
    (ours.sum() * 2 + (ours_stacked**2).sum()).backward()
    (theirs.sum() * 2 + (torch_stacked**2).sum()).backward()
    for o, t in zip(ours_in, torch_in, strict=True):
        assert_close(grad_of(o), grad_of(t))


def test_tensor_used_twice_and_residual_graph_accumulates() -> None:
    x = np.array([[0.5, -1.0], [2.0, 3.0]])
    w = np.array([[1.0, 2.0], [-0.5, 0.25]])
    (ox, tx), (ow, tw) = pair(x), pair(w)

    def block(a, b):
        hidden = a @ b
        residual = hidden + a  # a feeds both branches
        return (residual * hidden).sum() + (a * a).mean()

    block(ox, ow).backward()
    block(tx, tw).backward()
    assert_close(grad_of(ox), grad_of(tx))
    assert_close(grad_of(ow), grad_of(tw))


def test_grad_accumulates_across_backward_calls() -> None:
    ox, tx = pair(np.array([1.0, 2.0, 3.0]))
    for _ in range(3):
        (ox * ox).sum().backward()
        (tx * tx).sum().backward()
    assert_close(grad_of(ox), grad_of(tx))


def test_backward_frees_the_graph_and_refuses_a_second_pass() -> None:
    x = cp.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    z = (x * x).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 12.0])  # three passes of 2x


def test_backward_needs_gradient_for_non_scalar_and_checks_its_shape() -> None:
    x = cp.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\)"):
        (x * 2).backward(np.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        cp.tensor([1.0]).sum().backward()


def test_no_grad_records_nothing_and_detach_cuts_the_graph() -> None:
    x = cp.tensor([1.0, 2.0], requires_grad=True)
    with cp.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    z = (x.detach() * x).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0])


def test_retain_grad_keeps_intermediate_gradient() -> None:
    x = cp.tensor([1.0, -2.0], requires_grad=True)
    hidden = x * 3
    hidden.retain_grad()
    (hidden * hidden).sum().backward()
    np.testing.assert_array_equal(hidden.grad.numpy(), [6.0, -12.0])


def test_dtype_rules_follow_torch() -> None:
    assert cp.tensor([1.0, 2.0]).dtype == np.float32
    assert cp.tensor([1, 2]).dtype == np.int64
    assert cp.tensor(np.zeros(2)).dtype == np.float64
    x32 = cp.tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    assert (x32 * 2.5).dtype == np.float32
    assert (x32 + np.float64(1.0)).dtype == np.float32
    assert (x32 + cp.tensor([1, 2])).dtype == np.float32
    mixed = x32 * cp.tensor(np.ones(2))
    assert mixed.dtype == np.float64
    mixed.sum().backward()
    assert x32.grad.dtype == np.float32
    assert np.asarray(x32).dtype == np.float32
    with pytest.raises(TypeError, match="floating-point"):
        cp.tensor([1, 2], requires_grad=True)


def test_ndarray_on_the_left_defers_to_tensor() -> None:
    x = cp.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, cp.Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])


def test_shape_errors_are_clear() -> None:
    x = cp.tensor(np.zeros((2, 3)))
    with pytest.raises(
        ValueError, match=r"reshape: shape \(4, 2\) is invalid for an input of shape \(2, 3\)"
    ):
        x.reshape(4, 2)
    with pytest.raises(
        ValueError, match=r"matmul: shapes \(2, 3\) and \(2, 3\) cannot be multiplied"
    ):
        x @ x
    with pytest.raises(IndexError, match="sum: dim 2 is out of range"):
        x.sum(2)
    with pytest.raises(ValueError, match="cat: tensor 1 has shape"):
        cp.cat([x, cp.tensor(np.zeros((2, 2)))], 0)


def test_dense_concatenation_graph_sums_every_consumer_first() -> None:
    """DenseNet's pattern: each layer reads the concatenation of every earlier map, so one map
    has many consumers reached along paths of different lengths."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3))
    weights = [rng.standard_normal((3 * (i + 1), 3)) for i in range(4)]
    (ox, tx) = pair(x)
    ours_w, theirs_w = zip(*(pair(w) for w in weights), strict=True)

    def dense(first, ws, cat, tanh):
        maps = [first]
        for w in ws:
            maps.append(tanh(cat(maps, 1) @ w))
        return (cat(maps, 1) ** 2).sum()

    dense(ox, ours_w, cp.cat, lambda t: t.exp() / (t.exp() + 1)).backward()
    dense(tx, theirs_w, torch.cat, lambda t: t.exp() / (t.exp() + 1)).backward()
    assert_close(grad_of(ox), grad_of(tx))
    for o, t in zip(ours_w, theirs_w, strict=True):
        assert_close(grad_of(o), grad_of(t))
