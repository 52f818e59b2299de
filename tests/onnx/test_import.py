"""ONNX import: PyTorch's exports (both of its exporters; BatchNorm folded into Conv and kept)
loaded as convprop modules that compute PyTorch's outputs, back-propagate PyTorch's gradients
and take PyTorch's SGD steps; and export -> import -> export round trips."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import convprop as cp
from convprop import nn, optim
from convprop.onnx import OnnxError, export, load
from tests.models.test_zoo import ZOO

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx", reason="needs the onnx extra (pip install 'convprop[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra")
tnn = torch.nn
logging.disable(logging.WARNING)  # torch.onnx's progress lines


class VGGish(tnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = tnn.Sequential(
            tnn.Conv2d(3, 8, 3, padding=1),
            tnn.BatchNorm2d(8),
            tnn.ReLU(),
            tnn.Conv2d(8, 8, 3, padding=1),
            tnn.ReLU(),
            tnn.MaxPool2d(2),
            tnn.Conv2d(8, 16, 3, padding=1),
            tnn.LeakyReLU(0.1),
            tnn.AvgPool2d(2),
        )
        self.classifier = tnn.Sequential(
            tnn.Flatten(),
            tnn.Dropout(0.5),
            tnn.Linear(16 * 4 * 4, 32),
            tnn.ELU(),
            tnn.Linear(32, 5),
            tnn.LogSoftmax(dim=1),
        )

    def forward(self, x: Any) -> Any:
        return self.classifier(self.features(x))


class UNetish(tnn.Module):
    """Transposed convolutions, concatenation, upsampling, sigmoid and tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.down = tnn.Conv2d(2, 6, 3, stride=2, padding=1)
        self.up = tnn.ConvTranspose2d(6, 4, 2, stride=2)
        self.resize = tnn.Upsample(scale_factor=2, mode="nearest")
        self.head = tnn.Conv2d(4 + 2 + 6, 3, 1)

    def forward(self, x: Any) -> Any:
        low = torch.tanh(self.down(x))
        mixed = torch.cat([torch.sigmoid(self.up(low)), x, self.resize(low)], 1)
        return tnn.functional.softmax(self.head(mixed), dim=1)


class ShapeChain(tnn.Module):
    """``view(x.size(0), -1)`` (Shape, Gather, Unsqueeze, Concat, Reshape in the legacy export),
    padding, slicing, a matrix product, bilinear resizing, clamping, global max pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = tnn.Conv2d(3, 4, 3)
        self.mix = tnn.Parameter(torch.randn(6, 6) * 0.3)

    def forward(self, x: Any) -> Any:
        y = tnn.functional.pad(self.conv(x), (1, 1, 1, 1), mode="reflect")
        y = tnn.functional.interpolate(y[:, :, 1:, :], size=(5, 6), mode="bilinear")
        y = torch.clamp(y @ self.mix, -1.0, 1.0) + tnn.functional.adaptive_max_pool2d(y, 1)
        return y.view(y.size(0), -1)


EXTRA: list[tuple[str, Callable[[], Any], tuple[int, ...]]] = [
    ("shape_chain", ShapeChain, (2, 3, 8, 8)),
    ("vggish", VGGish, (2, 3, 16, 16)),
    ("unetish", UNetish, (2, 2, 8, 8)),
]
CASES = [(ident, build_torch, shape) for ident, _, build_torch, shape in ZOO] + EXTRA
MODES = {
    "legacy_kept": {"dynamo": False, "do_constant_folding": False},
    "legacy_folded": {"dynamo": False, "do_constant_folding": True},
    "dynamo": {"dynamo": True},
}


def torch_export(module: Any, shape: tuple[int, ...], path: Path, mode: str) -> Any:
    """``module`` (eval mode, weights and statistics off their initial values) exported."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        for name, buffer in module.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buffer.normal_(0, 0.2)
    module.eval()
    options = dict(MODES[mode], input_names=["input"], output_names=["output"])
    options["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(shape),), str(path), **options)
    return module


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(
    ("build_torch", "shape"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_torch_exports_compute_torchs_outputs_and_gradients(
    build_torch: Callable[[], Any], shape: tuple[int, ...], mode: str, tmp_path: Path
) -> None:
    theirs = torch_export(build_torch(), shape, tmp_path / "m.onnx", mode)
    ours = load(tmp_path / "m.onnx").eval()
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    for batch in (1, shape[0]):
        expected = theirs(torch.from_numpy(x[:batch])).detach().numpy()
        got = ours(cp.tensor(x[:batch])).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    # Gradients of a loss, with respect to the input and to every parameter by name.
    weights = np.random.default_rng(4).standard_normal(expected.shape).astype(np.float32)
    torch_x = torch.from_numpy(x).requires_grad_(True)
    (theirs(torch_x) * torch.from_numpy(weights)).sum().backward()
    our_x = cp.tensor(x, requires_grad=True)
    (ours(our_x) * cp.tensor(weights)).sum().backward()
    scale = np.abs(torch_x.grad.numpy()).max()
    np.testing.assert_allclose(our_x.grad.numpy(), torch_x.grad.numpy(), rtol=0, atol=1e-4 * scale)
    their_parameters = dict(theirs.named_parameters())
    our_parameters = dict(ours.named_parameters())
    # A folded export keeps a name for the folded weight (conv weight times gamma / sigma):
    # only parameters that are PyTorch's own, by name and value, have PyTorch's gradient.
    shared = [
        name
        for name in our_parameters
        if name in their_parameters
        and np.array_equal(our_parameters[name].numpy(), their_parameters[name].detach().numpy())
    ]
    assert shared, "some parameter came through unchanged"
    if mode == "legacy_kept":
        assert len(shared) == len(their_parameters), "every parameter keeps PyTorch's name"
    for name in shared:
        expected_grad = their_parameters[name].grad.numpy()
        got_grad = our_parameters[name].grad.numpy()
        np.testing.assert_allclose(
            got_grad,
            expected_grad,
            rtol=0,
            atol=1e-4 * max(np.abs(expected_grad).max(), 1e-8),
            err_msg=name,
        )


@pytest.mark.parametrize(
    ("build_torch", "shape"),
    [
        c[1:]
        for c in CASES
        if c[0] in ("lenet5_28_gray", "resnet20", "densenet_bc_10_gray", "vggish")
    ],
    ids=["lenet5", "resnet20", "densenet_bc", "vggish"],
)
def test_three_sgd_steps_equal_pytorchs(
    build_torch: Callable[[], Any], shape: tuple[int, ...], tmp_path: Path
) -> None:
    """Fine-tuning the import (eval mode, so batch norm and dropout are deterministic) follows
    the same trajectory as the PyTorch model."""
    theirs = torch_export(build_torch(), shape, tmp_path / "m.onnx", "legacy_kept")
    ours = load(tmp_path / "m.onnx").eval()
    rng = np.random.default_rng(5)
    torch_sgd = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    our_sgd = optim.SGD(list(ours.parameters()), lr=0.05, momentum=0.9)
    for _ in range(3):
        x = rng.standard_normal(shape).astype(np.float32)
        target = rng.integers(0, 5, shape[0])
        torch_sgd.zero_grad()
        loss = tnn.functional.cross_entropy(
            theirs(torch.from_numpy(x))[:, :5], torch.from_numpy(target)
        )
        loss.backward()
        torch_sgd.step()
        our_sgd.zero_grad()
        our_loss = nn.functional.cross_entropy(ours(cp.tensor(x))[:, :5], cp.tensor(target))
        our_loss.backward()
        our_sgd.step()
        assert abs(float(our_loss.item()) - float(loss.item())) <= 1e-5 * abs(float(loss.item()))
    their_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        if name in their_state:
            np.testing.assert_allclose(
                value, their_state[name].numpy(), rtol=1e-4, atol=1e-5, err_msg=name
            )


def test_an_import_trains_in_train_mode_and_saves(tmp_path: Path) -> None:
    """In train mode batch norm uses the batch's statistics and updates its running ones, as the
    layer does; the state_dict has PyTorch's keys and loads back."""
    theirs = torch_export(VGGish(), (2, 3, 16, 16), tmp_path / "m.onnx", "legacy_kept")
    ours = load(tmp_path / "m.onnx")
    theirs.train()
    ours.train()
    x = np.random.default_rng(6).standard_normal((4, 3, 16, 16)).astype(np.float32)
    theirs.classifier[1].p = 0.0  # no dropout in either, for a deterministic comparison
    ours_dropout_free = [n for n in ours.nodes if n.op_type == "Dropout"]
    for node in ours_dropout_free:
        node.inputs = node.inputs[:1]
        node.attributes["ratio"] = 0.0
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    got = ours(cp.tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(
        ours.state_dict()["features.1.running_mean"],
        theirs.state_dict()["features.1.running_mean"].numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    again = load(tmp_path / "m.onnx")
    again.load_state_dict(ours.state_dict())
    assert set(ours.state_dict()) <= set(theirs.state_dict())


def test_export_import_export_round_trips(tmp_path: Path) -> None:
    cp.manual_seed(1)
    from convprop.training import build_model

    model = build_model("resnet20", (1, 12, 12), 10).eval()
    x = np.random.default_rng(7).standard_normal((2, 1, 12, 12)).astype(np.float32)
    export(model, x, tmp_path / "a.onnx")
    imported = load(tmp_path / "a.onnx").eval()
    export(imported, x, tmp_path / "b.onnx")
    session = ort.InferenceSession(str(tmp_path / "b.onnx"), providers=["CPUExecutionProvider"])
    expected = model(cp.tensor(x)).numpy()
    for got in (imported(cp.tensor(x)).numpy(), session.run(None, {"input": x})[0]):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    assert list(imported.state_dict()) == [k for k in model.state_dict() if "num_batches" not in k]


def test_unknown_operators_are_listed(tmp_path: Path) -> None:
    helper = onnx.helper
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu_1"),
        helper.make_node("Hardmax", ["a"], ["b"], name="hm_1"),
        helper.make_node("Einsum", ["b", "b"], ["y"], name="sum_1", equation="ij,ij->ij"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", 1, [2, 3])],
        [helper.make_tensor_value_info("y", 1, [2, 3])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "u.onnx"))
    with pytest.raises(
        OnnxError, match=r"operators convprop cannot import: Einsum \(sum_1\), Hardmax \(hm_1\)"
    ):
        load(tmp_path / "u.onnx")


def test_files_that_are_not_onnx(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not protobuf at all")
    with pytest.raises(OnnxError, match="junk.onnx: not an ONNX model"):
        load(tmp_path / "junk.onnx")
    with pytest.raises(OnnxError, match="missing.onnx: no such file"):
        load(tmp_path / "missing.onnx")
