"""How closely ONNX round trips agree, network by network (a command, not a test):

    python -m benchmarks.onnx_agreement

For each network of the zoo (random weights, batch norm's running statistics moved by one
training-mode pass): the largest relative difference between convprop's output and
onnxruntime's on ``convprop.onnx.export``'s file; and for PyTorch's export of the same
network (TorchScript exporter, batch norm kept and folded into the convolutions) loaded with
``convprop.onnx.load``, the largest relative differences of the output and of the input's
gradient against PyTorch's. float32, batch 8; relative to the largest magnitude of the
reference. Also the time of one batch-1 inference, convprop against onnxruntime (median).
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import convprop as cp
from convprop import models
from convprop.onnx import export, load
from tests.models.mirrors import (
    TorchCifarResNet,
    TorchDenseNetBC,
    TorchLeNet5,
    TorchTDNN,
    TorchUNet,
    copy_into_torch,
)

NETWORKS: dict[str, tuple[Callable[[], Any], Callable[[], torch.nn.Module], tuple[int, ...]]] = {
    "LeNet-5": (models.lenet5, TorchLeNet5, (1, 28, 28)),
    "ResNet-20": (models.resnet20, lambda: TorchCifarResNet(3), (3, 32, 32)),
    "DenseNet-BC": (models.densenet_bc, TorchDenseNetBC, (3, 32, 32)),
    "TDNN": (models.tdnn, TorchTDNN, (40, 100)),
    "fcn": (models.fcn, TorchUNet, (1, 64, 64)),
}


def relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


def median_seconds(run: Callable[[], Any], repeats: int = 20) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure(name: str, folder: Path) -> list[str]:
    import onnxruntime as ort

    build, build_torch, shape = NETWORKS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, *shape)).astype(np.float32)
    cp.manual_seed(0)
    ours = build()
    ours(cp.tensor(x))  # train mode: the running statistics move off their initial values
    ours.eval()
    path = export(ours, x, folder / f"{name}.onnx")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with cp.no_grad():
        expected = ours(cp.tensor(x)).numpy()
    exported = relative(session.run(None, {"input": x})[0], expected)

    theirs = build_torch()
    copy_into_torch(ours, theirs)
    theirs.eval()
    imported = []
    for folded in (False, True):
        torch_path = folder / f"{name}-torch-{folded}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                theirs,
                (torch.from_numpy(x),),
                str(torch_path),
                dynamo=False,
                do_constant_folding=folded,
                training=torch.onnx.TrainingMode.EVAL,
            )
        loaded = load(torch_path)
        loaded.eval()
        our_x = cp.tensor(x, requires_grad=True)
        their_x = torch.from_numpy(x.copy()).requires_grad_(True)
        our_out, their_out = loaded(our_x), theirs(their_x)
        grad = rng.standard_normal(their_out.shape).astype(np.float32)
        our_out.backward(grad)
        their_out.backward(torch.from_numpy(grad))
        imported.append(relative(our_out.numpy(), their_out.detach().numpy()))
        imported.append(relative(our_x.grad.numpy(), their_x.grad.numpy()))

    one = x[:1]
    with cp.no_grad():
        ours_time = median_seconds(lambda: ours(cp.tensor(one)))
    runtime_time = median_seconds(lambda: session.run(None, {"input": one}))
    return [
        name,
        f"{exported:.1e}",
        *(f"{value:.1e}" for value in imported),
        f"{ours_time * 1e3:.2f}",
        f"{runtime_time * 1e3:.2f}",
    ]


def main() -> int:
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    header = [
        "network",
        "export: onnxruntime vs convprop",
        "import (BN kept): output",
        "input gradient",
        "import (BN folded): output",
        "input gradient",
        "convprop b1 ms",
        "onnxruntime b1 ms",
    ]
    print("| " + " | ".join(header) + " |")
    print("| --- |" + " ---: |" * (len(header) - 1))
    with tempfile.TemporaryDirectory() as folder:
        for name in NETWORKS:
            print("| " + " | ".join(measure(name, Path(folder))) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
