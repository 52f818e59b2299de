"""Module mechanics: registration, traversal, modes, dtypes and state_dict, against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convprop as cp
import convprop.nn as cnn


class Block(cnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = cnn.Conv2d(2, 3, 3)
        self.norm = cnn.BatchNorm2d(3)
        self.head = cnn.Sequential(cnn.Flatten(), cnn.Linear(12, 2))
        self.extra = cnn.ModuleList([cnn.ReLU(), cnn.Linear(2, 2)])
        self.named = cnn.ModuleDict({"out": cnn.Linear(2, 1)})
        self.scale = cnn.Parameter(np.ones(1, dtype=np.float32))
        self.register_buffer("counter", cp.zeros(1))
        self.register_buffer("scratch", cp.zeros(2), persistent=False)


class TorchBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.norm = torch.nn.BatchNorm2d(3)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        self.extra = torch.nn.ModuleList([torch.nn.ReLU(), torch.nn.Linear(2, 2)])
        self.named = torch.nn.ModuleDict({"out": torch.nn.Linear(2, 1)})
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.register_buffer("counter", torch.zeros(1))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)


def test_names_and_traversal_match_torch() -> None:
    ours, theirs = Block(), TorchBlock()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert repr(ours).replace("Block", "X") == repr(theirs).replace("TorchBlock", "X")


def test_state_dict_round_trip_through_torch_is_lossless() -> None:
    ours, theirs = Block(), TorchBlock()
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    again = Block()
    again.load_state_dict(theirs.state_dict())
    for (name, a), (_, b) in zip(
        ours.state_dict().items(), again.state_dict().items(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.dtype == b.dtype


def test_state_dict_returns_copies() -> None:
    layer = cnn.Linear(2, 2)
    state = layer.state_dict()
    state["weight"][...] = 7
    assert not np.all(layer.weight.numpy() == 7)


def test_strict_loading_lists_every_problem_and_changes_nothing() -> None:
    layer = cnn.Sequential(cnn.Linear(3, 2), cnn.BatchNorm1d(2))
    before = layer.state_dict()
    bad = dict(before)
    bad["0.weight"] = np.zeros((3, 3))
    del bad["1.running_var"]
    bad["2.weight"] = np.zeros(1)
    with pytest.raises(RuntimeError) as error:
        layer.load_state_dict(bad)
    message = str(error.value)
    assert "Error(s) in loading state_dict for Sequential" in message
    assert "size mismatch for 0.weight: copying a param with shape (3, 3)" in message
    assert 'missing key(s) in state_dict: "1.running_var"' in message
    assert 'unexpected key(s) in state_dict: "2.weight"' in message
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    result = layer.load_state_dict({k: v for k, v in before.items() if k != "0.bias"}, strict=False)
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == []


def test_train_eval_zero_grad_requires_grad_and_dtype() -> None:
    model = Block()
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    for param in model.parameters():
        param.grad = cp.tensor(np.ones(param.shape, dtype=param.dtype))
    model.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    model.double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.norm.num_batches_tracked.dtype == np.int64
    model.to(cp.float32)
    assert all(p.dtype == np.float32 for p in model.parameters())
    with pytest.raises(TypeError, match="to: dtype must be float32 or float64, got int32"):
        model.to(np.int32)


def test_reassigning_attributes_moves_them_between_registries() -> None:
    module = cnn.Module()
    module.layer = cnn.Linear(1, 1)
    module.layer = None
    assert "layer" not in dict(module.named_children())
    module.weight = cnn.Parameter(np.zeros(2))
    assert [n for n, _ in module.named_parameters()] == ["weight"]
    module.weight = 3
    assert list(module.named_parameters()) == [] and module.weight == 3


def test_shared_parameters_are_listed_once() -> None:
    shared = cnn.Linear(2, 2)
    model = cnn.Sequential(shared, cnn.ReLU(), shared)
    assert len(list(model.parameters())) == 2


def test_module_errors() -> None:
    class Broken(cnn.Module):
        def __init__(self) -> None:
            self.weight = cnn.Parameter(np.zeros(1))

    with pytest.raises(AttributeError, match=r"before Module.__init__\(\) call"):
        Broken()
    with pytest.raises(TypeError, match="register_parameter: 'w' must be a Parameter or None"):
        cnn.Module().register_parameter("w", cp.zeros(1))
    with pytest.raises(KeyError, match="contain no '.'"):
        cnn.Module().register_buffer("a.b", cp.zeros(1))
    with pytest.raises(NotImplementedError, match="Module does not define forward"):
        cnn.Module()(1)
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'kernel'"):
        _ = cnn.Linear(1, 1).kernel


def test_forward_hooks_see_outputs_and_can_be_removed() -> None:
    seen = []
    layer = cnn.Flatten()
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    layer(cp.tensor(np.zeros((2, 3, 4))))
    handle.remove()
    layer(cp.tensor(np.zeros((2, 3, 4))))
    assert seen == [(2, 12)]
    with layer.register_forward_hook(lambda module, inputs, output: output * 2):
        np.testing.assert_array_equal(layer(cp.tensor(np.ones((1, 2)))).numpy(), [[2.0, 2.0]])
    np.testing.assert_array_equal(layer(cp.tensor(np.ones((1, 2)))).numpy(), [[1.0, 1.0]])
