"""ONNX export: every zoo model and every exportable layer, run by onnxruntime at batch 1 and 3
from one export, equal to convprop's eval-mode output; what cannot be expressed is refused by
name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import convprop as cp
from convprop import nn
from convprop.nn import functional as F
from convprop.onnx import DEFAULT_OPSET, OnnxError, export
from convprop.training import build_model

onnx = pytest.importorskip("onnx", reason="needs the onnx extra (pip install 'convprop[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra")
ort.set_default_logger_severity(3)
logging.getLogger("onnxruntime").setLevel(logging.ERROR)

RTOL = 1e-5


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_runtime_matches(
    model: nn.Module, shape: tuple[int, ...], path: Path, **kwargs: Any
) -> None:
    """Export once (traced at batch 3), then compare at batch 1 and 3."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    model.eval()
    export(model, x, path, **kwargs)
    checked = onnx.load(str(path))
    onnx.checker.check_model(checked, full_check=True)
    for batch in (1, 3):
        ours = model(cp.tensor(x[:batch])).numpy()
        theirs = run_onnx(path, x[:batch])
        assert theirs.shape == ours.shape
        scale = max(np.abs(ours).max(), 1e-6)
        np.testing.assert_allclose(
            theirs, ours, rtol=0, atol=RTOL * scale, err_msg=f"batch {batch}"
        )


def settled(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Batch norm's running statistics moved away from 0 and 1, by a few training passes."""
    rng = np.random.default_rng(1)
    model.train()
    with cp.no_grad():
        for _ in range(2):
            model(cp.tensor(rng.standard_normal((4, *shape)).astype(np.float32)))
    return model.eval()


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("lenet5", (1, 28, 28)),
        ("resnet20", (1, 28, 28)),
        ("resnet32", (3, 16, 16)),
        ("resnet56", (1, 12, 12)),
        ("densenet_bc", (1, 28, 28)),
        ("tdnn", (28, 28)),
    ],
)
def test_every_zoo_model_runs_in_onnxruntime(
    name: str, shape: tuple[int, ...], tmp_path: Path
) -> None:
    cp.manual_seed(0)
    model = settled(build_model(name, shape, 10), shape)
    assert_runtime_matches(model, shape, tmp_path / f"{name}.onnx")


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: cp.Tensor) -> cp.Tensor:
        return F.relu(self.conv(x) + x)


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x: cp.Tensor) -> cp.Tensor:
        return cp.cat([self.a(x), self.b(x), x], 1)


class Resize(nn.Module):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.kwargs = kwargs

    def forward(self, x: cp.Tensor) -> cp.Tensor:
        return F.interpolate(x, **self.kwargs)


class Expression(nn.Module):
    """Arithmetic with constants, reductions, slicing, reshapes: the tensor ops themselves."""

    def forward(self, x: cp.Tensor) -> cp.Tensor:
        y = (x * 2.0 - 1.0) / 3.0 + x.abs().sqrt() ** 2
        y = y[:, 1:, ::2].clamp(-0.5, 0.5)
        z = (
            y.mean(dim=(2, 3), keepdim=True)
            + y.sum(dim=1, keepdim=True)
            - y.amax(dim=3, keepdim=True)
        )
        return z.permute(0, 2, 3, 1).reshape(x.shape[0], -1).exp().log()


IMAGE = (4, 8, 8)
LAYERS: list[tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = [
    ("conv1d", lambda: nn.Conv1d(3, 5, 3, stride=2, padding=1), (3, 11)),
    ("conv1d_same_dilated", lambda: nn.Conv1d(3, 4, 4, padding="same", dilation=2), (3, 12)),
    ("conv2d_grouped", lambda: nn.Conv2d(4, 6, 3, groups=2, padding=(1, 2)), IMAGE),
    ("conv2d_same_even", lambda: nn.Conv2d(4, 3, (2, 4), padding="same"), IMAGE),
    ("conv2d_reflect", lambda: nn.Conv2d(4, 3, 3, padding=1, padding_mode="reflect"), IMAGE),
    ("conv2d_replicate", lambda: nn.Conv2d(4, 3, 3, padding=2, padding_mode="replicate"), IMAGE),
    ("conv2d_circular", lambda: nn.Conv2d(4, 3, 3, padding=1, padding_mode="circular"), IMAGE),
    ("conv2d_strided_dilated", lambda: nn.Conv2d(4, 2, 3, stride=2, dilation=2, padding=2), IMAGE),
    ("conv_transpose1d", lambda: nn.ConvTranspose1d(3, 2, 4, stride=3, output_padding=1), (3, 6)),
    (
        "conv_transpose2d",
        lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
        IMAGE,
    ),
    ("max_pool1d", lambda: nn.MaxPool1d(3, 2, padding=1), (3, 11)),
    ("max_pool2d_ceil", lambda: nn.MaxPool2d(3, 2, ceil_mode=True), (4, 9, 9)),
    ("max_pool2d_dilated", lambda: nn.MaxPool2d(2, 1, dilation=2), IMAGE),
    ("avg_pool1d", lambda: nn.AvgPool1d(2), (3, 10)),
    ("avg_pool2d_pad", lambda: nn.AvgPool2d(3, 2, padding=1), (4, 9, 9)),
    (
        "avg_pool2d_pad_excluded",
        lambda: nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
        (4, 9, 9),
    ),
    ("avg_pool2d_ceil", lambda: nn.AvgPool2d(2, 2, ceil_mode=True), (4, 9, 9)),
    ("adaptive_avg_global", lambda: nn.AdaptiveAvgPool2d(1), IMAGE),
    ("adaptive_avg_2x2", lambda: nn.AdaptiveAvgPool2d((2, 4)), IMAGE),
    ("adaptive_avg_uneven", lambda: nn.AdaptiveAvgPool2d((3, 5)), IMAGE),
    ("adaptive_avg_uneven_1d", lambda: nn.AdaptiveAvgPool1d(4), (3, 10)),
    ("adaptive_max_1d", lambda: nn.AdaptiveMaxPool1d(5), (3, 10)),
    ("adaptive_max_global", lambda: nn.AdaptiveMaxPool2d(1), IMAGE),
    ("linear", lambda: nn.Sequential(nn.Flatten(), nn.Linear(256, 7)), IMAGE),
    ("linear_3d", lambda: nn.Linear(8, 5), (4, 8)),
    (
        "activations",
        lambda: nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(4, 4, 1),
            nn.LeakyReLU(0.2),
            nn.ELU(0.5),
            nn.Tanh(),
            nn.Sigmoid(),
            nn.SiLU(),
        ),
        IMAGE,
    ),
    ("gelu", lambda: nn.GELU(), IMAGE),
    ("gelu_tanh", lambda: nn.GELU(approximate="tanh"), IMAGE),
    ("softmax", lambda: nn.Softmax(dim=1), IMAGE),
    ("log_softmax", lambda: nn.Sequential(nn.Flatten(), nn.LogSoftmax(dim=1)), IMAGE),
    ("batch_norm2d", lambda: nn.BatchNorm2d(4), IMAGE),
    ("batch_norm1d", lambda: nn.BatchNorm1d(3), (3, 10)),
    (
        "dropout_eval",
        lambda: nn.Sequential(nn.Dropout(0.5), nn.Dropout2d(0.3), nn.Identity()),
        IMAGE,
    ),
    ("residual", Residual, IMAGE),
    ("concat", Concat, IMAGE),
    ("nearest", lambda: Resize(scale_factor=2, mode="nearest"), IMAGE),
    ("nearest_size", lambda: Resize(size=(5, 11), mode="nearest"), IMAGE),
    ("nearest_exact", lambda: Resize(size=(13, 6), mode="nearest-exact"), IMAGE),
    ("bilinear", lambda: Resize(size=(12, 5), mode="bilinear"), IMAGE),
    (
        "bilinear_corners",
        lambda: Resize(scale_factor=1.5, mode="bilinear", align_corners=True),
        IMAGE,
    ),
    ("linear_1d", lambda: Resize(scale_factor=3, mode="linear"), (3, 7)),
    ("pixel_shuffle", lambda: nn.PixelShuffle(2), IMAGE),
    ("pixel_unshuffle", lambda: nn.PixelUnshuffle(2), IMAGE),
    ("upsample_layer", lambda: nn.Upsample(scale_factor=2, mode="bilinear"), IMAGE),
    ("dilate2d", lambda: nn.Dilate2d(3), IMAGE),
    ("dilate1d", lambda: nn.Dilate1d(2), (3, 7)),
    ("decimate2d", lambda: nn.Decimate2d((2, 3)), IMAGE),
    ("decimate1d", lambda: nn.Decimate1d(3), (3, 10)),
    ("expression", Expression, IMAGE),
]


@pytest.mark.parametrize(
    ("build", "shape"), [case[1:] for case in LAYERS], ids=[c[0] for c in LAYERS]
)
def test_every_exportable_layer_runs_in_onnxruntime(
    build: Callable[[], nn.Module], shape: tuple[int, ...], tmp_path: Path
) -> None:
    cp.manual_seed(2)
    model = settled(build(), shape)
    assert_runtime_matches(model, shape, tmp_path / "layer.onnx")


@pytest.mark.parametrize("opset", [13, 17, DEFAULT_OPSET])
def test_older_opsets(opset: int, tmp_path: Path) -> None:
    cp.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.GELU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
        nn.Softmax(dim=1),
    )
    assert_runtime_matches(model, (1, 8, 8), tmp_path / "old.onnx", opset_version=opset)
    assert onnx.load(str(tmp_path / "old.onnx")).opset_import[0].version == opset


def test_fixed_batch_and_names(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    path = export(
        model,
        np.zeros((2, 1, 5, 5), np.float32),
        tmp_path / "m.onnx",
        dynamic_batch=False,
        input_names=("image",),
        output_names=("scores",),
    )
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == [
        "scores"
    ]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert {"0.bias", "0.weight"} <= {i.name for i in graph.initializer}  # state_dict names


@pytest.mark.parametrize(
    ("build", "shape", "message"),
    [
        (
            lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, divisor_override=3)),
            (1, 8, 8),
            r"1 \(AvgPool2d\): cannot export avg_pool2d to ONNX: "
            r"ONNX's AveragePool has no divisor_override",
        ),
        (
            lambda: nn.AdaptiveMaxPool2d(3),
            (2, 8, 8),
            r"AdaptiveMaxPool2d: cannot export adaptive_max_pool2d to ONNX: "
            r"its windows .* overlap unevenly",
        ),
        (
            lambda: WithIndices(),
            (2, 4, 4),
            r"cannot export max_pool2d to ONNX: ONNX's MaxPool indices count differently",
        ),
        (
            lambda: nn.Sequential(nn.Identity(), Unfolding()),
            (2, 4, 4),
            r"1 \(Unfolding\): cannot export unfold to ONNX: ONNX has no operator for it",
        ),
        (
            lambda: Outside(),
            (2, 4, 4),
            r"computes a value of shape \(3, 2, 4, 4\) outside convprop's ops",
        ),
    ],
    ids=["divisor_override", "adaptive_uneven", "indices", "unfold", "numpy"],
)
def test_what_onnx_cannot_express_is_refused_by_layer(
    build, shape, message, tmp_path: Path
) -> None:
    with pytest.raises(OnnxError, match=message):
        export(build(), np.ones((3, *shape), np.float32), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


class WithIndices(nn.Module):
    def forward(self, x: cp.Tensor) -> cp.Tensor:
        values, indices = F.max_pool2d(x, 2, return_indices=True)
        return values


class Unfolding(nn.Module):
    def forward(self, x: cp.Tensor) -> cp.Tensor:
        return F.unfold(x, 2)


class Outside(nn.Module):
    def forward(self, x: cp.Tensor) -> cp.Tensor:
        return x + cp.Tensor(np.maximum(x.numpy(), 0))


def test_bad_opset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OnnxError, match="opset_version must be between 13 and"):
        export(nn.ReLU(), np.ones((1, 2), np.float32), tmp_path / "x.onnx", opset_version=7)


def test_onnx_is_imported_only_when_used() -> None:
    import subprocess
    import sys

    code = "import sys, convprop, convprop.onnx, convprop.cli; print('onnx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_a_missing_extra_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "from convprop.cli import main\n"
        f"sys.exit(main(['export', {str(tmp_path)!r}, {str(tmp_path / 'x.onnx')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "ONNX support needs the onnx package: pip install 'convprop[onnx]'" in result.stderr
