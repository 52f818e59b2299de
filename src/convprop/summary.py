"""``summary(model, input_shape)``: a table of layers, output shapes, parameters and mult-adds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convprop.autograd import Tensor, no_grad
from convprop.nn import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, Linear, Module


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    mult_adds: int


@dataclass
class Summary:
    """What ``summary`` measured; ``str()`` gives the table."""

    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    total_parameters: int
    trainable_parameters: int

    @property
    def total_mult_adds(self) -> int:
        return sum(row.mult_adds for row in self.rows)

    def __str__(self) -> str:
        header = ("Layer (type)", "Output shape", "Param #", "Mult-adds")
        body = [
            (
                f"{row.name} ({row.kind})",
                str(list(row.output_shape)),
                f"{row.parameters:,}",
                f"{row.mult_adds:,}",
            )
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(4)]

        def format_line(cells: Sequence[str]) -> str:
            return "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "=" * len(format_line(header))
        lines = [rule, format_line(header), rule, *(format_line(line) for line in body), rule]
        lines += [
            f"Input shape: {list(self.input_shape)}    Output shape: {list(self.output_shape)}",
            f"Total params: {self.total_parameters:,}",
            f"Trainable params: {self.trainable_parameters:,}",
            f"Non-trainable params: {self.total_parameters - self.trainable_parameters:,}",
            f"Total mult-adds (M): {self.total_mult_adds / 1e6:.2f}",
            rule,
        ]
        return "\n".join(lines)


def _mult_adds(module: Module, inputs: tuple[Any, ...], output: Tensor) -> int:
    """Multiply-accumulates of one call: every output (or, transposed, input) position of a
    convolution costs one kernel's worth per output channel; a linear layer in x out per row."""
    if isinstance(module, (Conv1d, Conv2d)):
        positions = output.numel() // output.shape[-module._spatial_dims - 1]
        return positions * module.weight.numel()
    if isinstance(module, (ConvTranspose1d, ConvTranspose2d)):
        source = inputs[0]
        positions = source.numel() // source.shape[-module._spatial_dims - 1]
        return positions * module.weight.numel()
    if isinstance(module, Linear):
        return (output.numel() // module.out_features) * module.weight.numel()
    return 0


def summary(model: Module, input_shape: Sequence[int], dtype: Any = np.float32) -> Summary:
    """Run ``model`` once on zeros of ``input_shape`` (batch axis included, as torchinfo) and
    tabulate every leaf layer: name, type, output shape, parameters and mult-adds.

    >>> from convprop import nn, summary
    >>> print(summary(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), (1, 1, 8, 8)))
    ==============================================
    Layer (type)  Output shape  Param #  Mult-adds
    ==============================================
    0 (Conv2d)    [1, 4, 6, 6]       40      1,296
    1 (ReLU)      [1, 4, 6, 6]        0          0
    ==============================================
    Input shape: [1, 1, 8, 8]    Output shape: [1, 4, 6, 6]
    Total params: 40
    Trainable params: 40
    Non-trainable params: 0
    Total mult-adds (M): 0.00
    ==============================================
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"summary: input_shape must be positive sizes, got {tuple(input_shape)}")
    rows: list[LayerRow] = []
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def record(module: Module, inputs: tuple[Any, ...], output: Any, name: str = name) -> None:
            first = output[0] if isinstance(output, tuple) else output
            rows.append(
                LayerRow(
                    name or type(module).__name__,
                    type(module).__name__,
                    tuple(first.shape),
                    sum(p.numel() for p in module.parameters(recurse=False)),
                    _mult_adds(module, inputs, first),
                )
            )

        handles.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            output = model(Tensor(np.zeros(shape, dtype=dtype)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    parameters = list(model.parameters())
    return Summary(
        rows,
        shape,
        tuple(output.shape),
        sum(p.numel() for p in parameters),
        sum(p.numel() for p in parameters if p.requires_grad),
    )
