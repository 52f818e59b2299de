"""explain.trace / ``explain model``: a trained network's layers, forward and backward, equal to
PyTorch's for the same weights and image, every entry verified, and the JSON's keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import convprop as cp
from convprop.cli import main
from convprop.explain.trace import trace
from convprop.training import TrainConfig, fit, load_run
from tests.models.mirrors import TorchCifarResNet, TorchDenseNetBC, TorchLeNet5

torch = pytest.importorskip("torch")

KEYS = [
    "name",
    "type",
    "config",
    "shape_arithmetic",
    "input",
    "output",
    "grad_output",
    "grad_input",
    "grad_weight",
    "grad_bias",
    "rule",
    "check",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runs")
    made = {}
    for model in ("lenet5", "resnet20", "densenet_bc"):
        run = folder / model
        fit(
            TrainConfig(model=model, epochs=1, limit=40, batch_size=20, augment=[], seed=1),
            run,
            progress=False,
            log=lambda line: None,
        )
        made[model] = run
    return made


MIRRORS = {
    "lenet5": lambda: TorchLeNet5(),
    "resnet20": lambda: TorchCifarResNet(3, 1, 10),
    "densenet_bc": lambda: TorchDenseNetBC(in_channels=1),
}


def torch_layers(module: Any, image: np.ndarray, label: int) -> tuple[dict[str, Any], Any]:
    """Every leaf module's output and output gradient, by name, and the parameters."""
    outputs: dict[str, list[np.ndarray]] = {}
    grads: dict[str, list[np.ndarray]] = {}
    handles = []
    for name, layer in module.named_modules():
        if next(layer.children(), None) is not None:
            continue

        def forward_hook(layer: Any, args: Any, output: Any, name: str = name) -> None:
            outputs.setdefault(name, []).append(output.detach().numpy()[0].copy())
            if output.requires_grad:
                output.register_hook(
                    lambda g, name=name: grads.setdefault(name, []).insert(0, g.numpy()[0].copy())
                )

        handles.append(layer.register_forward_hook(forward_hook))
    x = torch.from_numpy(image[None]).requires_grad_(True)
    logits = module(x)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([label]))
    loss.backward()
    for handle in handles:
        handle.remove()
    return {
        "outputs": outputs,
        "grads": grads,
        "logits": logits.detach().numpy()[0],
        "loss": float(loss),
        "input_grad": x.grad.numpy()[0],
    }, module


def close(a: np.ndarray, b: np.ndarray, what: str, rtol: float = 1e-5) -> None:
    scale = max(float(np.abs(b).max()), 1e-12)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("model", ["lenet5", "resnet20", "densenet_bc"])
def test_the_trace_equals_pytorch(runs: dict[str, Path], model: str) -> None:
    network, checkpoint = load_run(runs[model])
    image = np.random.default_rng(0).standard_normal(checkpoint.input_shape).astype(np.float32)
    result = trace(network, image, 3, checks=1)
    mirror = MIRRORS[model]()
    mirror.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in network.state_dict().items()}
    )
    mirror.eval()
    theirs, mirror = torch_layers(mirror, image, 3)
    assert result.loss == pytest.approx(theirs["loss"], rel=1e-5)
    calls: dict[str, int] = {}
    compared = 0
    for entry in result.entries:
        if entry.name not in theirs["outputs"]:
            continue
        call = calls.get(entry.name, 0)
        calls[entry.name] = call + 1
        close(entry.output, theirs["outputs"][entry.name][call], f"{entry.name} output")
        close(entry.grad_output, theirs["grads"][entry.name][call], f"{entry.name} grad_output")
        compared += 1
    assert compared >= 10
    parameters = dict(mirror.named_parameters())
    for entry in result.entries:
        if entry.grad_weight is not None and f"{entry.name}.weight" in parameters:
            close(
                entry.grad_weight,
                parameters[f"{entry.name}.weight"].grad.numpy(),
                f"{entry.name} dL/dw",
            )
        if entry.grad_bias is not None and f"{entry.name}.bias" in parameters:
            close(
                entry.grad_bias,
                parameters[f"{entry.name}.bias"].grad.numpy(),
                f"{entry.name} dL/db",
            )
    first = result.entries[0]
    close(first.grad_input, theirs["input_grad"], "dL/dx of the image")
    assert result.max_rel_error < 1e-3
    assert all(e.check["entries"] > 0 for e in result.entries)


def test_forks_split_and_joins_add(runs: dict[str, Path]) -> None:
    """ResNet's residual additions and DenseNet's concatenations are entries of their own; at
    a fork the shares of the consumers add up to the value's gradient."""
    network, checkpoint = load_run(runs["resnet20"])
    image = np.random.default_rng(1).standard_normal(checkpoint.input_shape).astype(np.float32)
    result = trace(network, image, 5, checks=0)
    adds = [e for e in result.entries if e.type == "add"]
    assert len(adds) == 9 and adds[0].name == "layer1.0.add"
    assert isinstance(adds[0].input, list) and len(adds[0].input) == 2
    # The block's input feeds conv1 and the shortcut add: the two shares sum to its gradient.
    block_input = next(i for i, e in enumerate(result.entries) if e.name == "layer1.0.conv1")
    producer = result.entries[result.entries[block_input].sources[0]]
    shares = [result.entries[block_input].grad_input, adds[0].grad_input[1]]
    close(shares[0] + shares[1], producer.grad_output, "fork")
    network, checkpoint = load_run(runs["densenet_bc"])
    result = trace(network, np.zeros(checkpoint.input_shape, np.float32), 0, checks=0)
    cat = next(e for e in result.entries if e.type == "cat" and len(e.grad_input) == 3)
    widths = [np.shape(part)[0] for part in cat.input]
    assert cat.shape_arithmetic.startswith(
        f"{' + '.join(map(str, widths))} channels = {sum(widths)}: "
    )
    assert f"0..{widths[0] - 1} to input 1, {widths[0]}..{sum(widths[:2]) - 1} to input 2" in (
        cat.rule
    )
    start = 0
    for width, share in zip(widths, cat.grad_input, strict=True):
        np.testing.assert_array_equal(share, cat.grad_output[start : start + width])
        start += width


def test_the_cli_json_has_the_documented_keys(
    runs: dict[str, Path], capsys, tmp_path: Path
) -> None:
    assert (
        main(
            [
                "explain",
                "model",
                str(runs["lenet5"]),
                "--index",
                "2",
                "--format",
                "json",
                "--checks",
                "1",
            ]
        )
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert list(document) == [
        "run",
        "image",
        "task",
        "label",
        "prediction",
        "probabilities",
        "loss",
        "layers",
    ]
    assert document["image"] == "test sample 2" and isinstance(document["label"], int)
    assert document["task"] == "classify" and isinstance(document["prediction"], int)
    for layer in document["layers"]:
        assert list(layer) == KEYS
        assert set(layer["check"]) == {"max_rel_error", "entries"}
    conv = document["layers"][0]
    assert (
        conv["name"] == "features.0"
        and conv["shape_arithmetic"] == "(28 + 2*2 - 5)/1 + 1 = 28; (28 + 2*2 - 5)/1 + 1 = 28"
    )
    assert "Rot180" in conv["rule"] and np.shape(conv["input"]) == (1, 28, 28)
    pool = next(layer for layer in document["layers"] if layer["type"] == "MaxPool2d")
    assert "routed to its window's argmax (1 of 4 positions)" in pool["rule"]
    assert document["layers"][-1]["rule"] == "softmax + cross-entropy: dL/ds = p - onehot(label)"


def test_the_cli_reads_images_labels_and_writes_files(
    runs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    from PIL import Image

    from convprop.data import load_mnist_5k

    digit = tmp_path / "digit.png"
    Image.fromarray((load_mnist_5k().inputs[700, 0] * 255).astype(np.uint8)).save(digit)
    page, figure = tmp_path / "page.html", tmp_path / "page.png"
    assert (
        main(
            [
                "explain",
                "model",
                str(runs["lenet5"]),
                "--image",
                str(digit),
                "--label",
                "1",
                "--html",
                str(page),
                "--figure",
                str(figure),
                "--checks",
                "1",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert text.startswith(f"explain model: {runs['lenet5']}, {digit}") and "label 1" in text
    assert page.read_text().startswith("<!DOCTYPE html>") and figure.stat().st_size > 1000
    assert main(["explain", "model", str(runs["lenet5"]), "--index", "0", "--label", "ten"]) == 2
    assert "--label 'ten' is not a class of the run" in capsys.readouterr().err
    assert main(["explain", "model", str(runs["lenet5"]), "--index", "99999"]) == 2
    assert "--index 99999 is outside the run's" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["resnet32", "resnet56", "tdnn"])
def test_every_other_zoo_model_traces(model: str, tmp_path: Path) -> None:
    from convprop.training import build_model

    shape = (28, 28) if model == "tdnn" else (1, 12, 12)
    cp.manual_seed(0)
    network = build_model(model, shape, 10)
    image = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    result = trace(network, image, 1, checks=1 if model == "tdnn" else 0)
    assert result.entries[-1].name == "loss" and result.max_rel_error < 1e-3
    assert all(e.check["entries"] > 0 for e in result.entries)


def test_an_onnx_import_traces(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="needs the onnx extra")
    from convprop.onnx import load

    torch.onnx.export(
        TorchLeNet5().eval(),
        (torch.zeros(2, 1, 28, 28),),
        str(tmp_path / "m.onnx"),
        dynamo=False,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    network = load(tmp_path / "m.onnx")
    image = np.random.default_rng(3).standard_normal((1, 28, 28)).astype(np.float32)
    result = trace(network, image, 2, checks=1)
    assert [e.type for e in result.entries[:3]] == ["conv2d", "relu", "max_pool2d"]
    assert result.max_rel_error < 1e-3
