"""``convprop export``: a trained run as an ONNX model that takes what ``predict`` takes.

The graph starts with the run's input normalisation ((x - mean) / std per channel, the data's
statistics saved with the run) and, for a TDNN that read images column by column, the reshape
of (N, C, H, W) images into (N, C H, W) sequences; so a deployment feeds it images scaled to
[0, 1], as ``convprop predict`` reads them, and gets the network's logits. The class names and
the input's layout are stored in the model's metadata (``classes``, ``input``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import convprop as cp
from convprop import nn
from convprop.training.checkpoint import Checkpoint, load_run


class _Prepared(nn.Module):
    """The run's network behind its input preparation (normalisation, images as sequences)."""

    def __init__(self, network: nn.Module, checkpoint: Checkpoint, dtype: np.dtype) -> None:
        super().__init__()
        self.network = network
        # The statistics are the network's input channels' (a TDNN's: C H per column).
        channels, *spatial = checkpoint.input_shape
        for name, values in (("mean", checkpoint.mean), ("std", checkpoint.std)):
            statistic = np.array(values, dtype).reshape(channels, *(1,) * len(spatial))
            self.register_buffer(name, cp.tensor(statistic))
        self.as_sequence = checkpoint.as_sequence

    def forward(self, x: cp.Tensor) -> cp.Tensor:
        if self.as_sequence:
            n, c, h, w = x.shape
            x = x.reshape(n, c * h, w)
        output: cp.Tensor = self.network((x - self.mean) / self.std)
        return output


def export_run(
    run_dir: str | Path, path: str | Path, opset: int | None = None, weights: str = "latest"
) -> Path:
    """Write the run's network (its ``latest`` or ``best`` weights) to ``path`` as ONNX."""
    from convprop.onnx import export, require

    onnx = require("onnx")
    network, checkpoint = load_run(run_dir, weights)
    dtype = np.dtype(checkpoint.config.dtype)
    model = _Prepared(network, checkpoint, dtype)
    shape = checkpoint.image_shape or checkpoint.input_shape
    example = np.random.default_rng(0).random((2, *shape)).astype(dtype)
    out = export(model, example, path, opset_version=opset, output_names=("logits",))
    proto = onnx.load(str(out))
    layout = "N, C, H, W images in [0, 1]" if checkpoint.image_shape else "N, C, L sequences"
    for key, value in (
        ("classes", json.dumps(checkpoint.classes)),
        ("input", layout),
        ("source", f"convprop run {Path(run_dir).name}, {weights} weights"),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    from convprop.io.files import atomic_write_bytes

    atomic_write_bytes(out, proto.SerializeToString())
    return out
