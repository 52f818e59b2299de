"""How far float32 gradients are from the float64 ones, with and without Winograd (a command,
not a test):

    python -m benchmarks.float32_agreement

Winograd's F(4x4, 3x3) forward rounds about ten times more than im2col + GEMM in float32
(its transforms multiply by up to 8 and cancel). That alone is harmless: the output moves by
~1e-6 of its scale. But a ReLU's gradient is a step function of its input, so a
pre-activation within that rounding of zero can land on the other side, and that element's
gradient then changes from all to nothing: the float32 gradient is then the exact gradient of
a slightly different forward pass. The table shows it: the largest relative difference of the
input's and the parameters' gradients from float64, for ten 3x3 layers with ReLU and with
tanh (smooth), and for ResNet-20 in training mode, with Winograd as the plans choose it and
with it switched off (``conv.WINOGRAD_MIN_CHANNELS`` out of reach).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import convprop as cp
from convprop import models, nn
from convprop.ops import conv


def relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def stack(activation: type[nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        layers: list[nn.Module] = []
        for _ in range(10):
            layers += [nn.Conv2d(16, 16, 3, padding=1, bias=False), activation()]
        return nn.Sequential(*layers)

    return build


CASES: dict[str, tuple[Callable[[], Any], tuple[int, ...]]] = {
    "10 x (conv 16->16 3x3, ReLU), 32x32 b32": (stack(nn.ReLU), (32, 16, 32, 32)),
    "10 x (conv 16->16 3x3, tanh), 32x32 b32": (stack(nn.Tanh), (32, 16, 32, 32)),
    "ResNet-20, training mode, 32x32 b32": (models.resnet20, (32, 3, 32, 32)),
}


def gradients(build: Callable[[], Any], shape: tuple[int, ...], dtype: type) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    cp.manual_seed(0)
    model = build().to(np.dtype(dtype))
    inputs = cp.tensor(x.astype(dtype), requires_grad=True)
    output = model(inputs)
    output.backward(rng.standard_normal(output.shape).astype(dtype))
    found = {name: p.grad.numpy() for name, p in model.named_parameters()}
    return {"input": inputs.grad.numpy(), **found}


def main() -> int:
    print("| network | Winograd | input gradient | worst parameter gradient |")
    print("| --- | --- | ---: | ---: |")
    default = conv.WINOGRAD_MIN_CHANNELS
    for name, (build, shape) in CASES.items():
        exact = gradients(build, shape, np.float64)
        for winograd in (True, False):
            conv.WINOGRAD_MIN_CHANNELS = default if winograd else 1 << 30
            try:
                single = gradients(build, shape, np.float32)
            finally:
                conv.WINOGRAD_MIN_CHANNELS = default
            worst = max(relative(single[k], exact[k]) for k in exact if k != "input")
            print(
                f"| {name} | {'as planned' if winograd else 'off'} | "
                f"{relative(single['input'], exact['input']):.1e} | {worst:.1e} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
