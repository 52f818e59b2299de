"""The scanning MLP: a CNN seen as one MLP applied at every position of the input.

Deck 004's recap: "Scanning an input with a network and combining the outcomes is equivalent to
scanning with individual neurons hierarchically: first level neurons scan the input, higher-level
neurons scan the 'maps' formed by lower-level neurons ... For 1-D scan along time, it is called a
Time-delay neural network." This module makes both halves of that sentence runnable for 1-D
sequences (N, C, L) and shows them equal:

- :class:`ScanningMLP` is the plain form: an ordinary MLP reads one window of ``window`` frames
  and is applied at every window position (stride ``stride``). Its first layer, scanned, is a
  ``Conv1d(C, h1, window, stride)``; every later layer sees only the first layer's output at the
  same position, so it is a 1x1 ``Conv1d``. :func:`to_conv1d` builds that stack.
- :class:`DistributedScanningMLP` is the distributed (shared-weight) form: level-1 neurons each
  read ``K1`` frames, a level-l neuron reads ``K_l`` consecutive outputs of level l-1, and all
  neurons of a level share one small block of weights. Scanned, each level is a
  ``Conv1d(h_{l-1}, h_l, K_l, stride=s_l)``. Its forward is nevertheless written as the MLP of
  the scan: over a window of R frames it applies dense layers whose matrices are the shared
  blocks unrolled into Toeplitz form, as deck 002 writes a convolution as a matrix
  multiplication. The gradient of a shared block is then the sum of the gradients of all its
  copies in the unrolled matrix, which is exactly the convolution's weight gradient.

Both conversions copy weights (1:1, dtype kept) so the outputs are equal to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import cast

import numpy as np

from convprop import nn
from convprop.autograd import Tensor
from convprop.autograd.tensor import as_array
from convprop.models._common import check_positive_int
from convprop.nn import functional as F

__all__ = ["DistributedScanningMLP", "ScanningMLP", "to_conv1d", "to_scanning_mlp"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def _check_activation(func: str, activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"{func}: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
        )


def _check_sizes(func: str, name: str, values: object, allow_empty: bool = True) -> tuple[int, ...]:
    """A sequence of positive ints, as a tuple."""
    if isinstance(values, (int, str)) or not isinstance(values, Sequence):
        raise ValueError(f"{func}: {name} must be a sequence of positive ints, got {values!r}")
    sizes = tuple(values)
    if not sizes and not allow_empty:
        raise ValueError(f"{func}: {name} must list at least one size, got {values!r}")
    for value in sizes:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{func}: {name} must be a sequence of positive ints, got {values!r}")
    return tuple(int(v) for v in sizes)


def _windows(
    func: str, input: Tensor, in_channels: int, window: int, stride: int
) -> tuple[Tensor, bool]:
    """Every window of ``window`` frames as a row: (N, C, L) -> (N, L_out, C * window).

    The frames of a window are flattened channel-major (index c * window + k), the order of
    ``F.unfold``, so row l holds x[:, c, l * stride + k] at column c * window + k.
    """
    batched = input.ndim == 3
    if input.ndim not in (2, 3) or input.shape[-2] != in_channels or input.shape[-1] < window:
        raise ValueError(
            f"{func}: expected input (N, {in_channels}, L) or ({in_channels}, L) with L >= "
            f"{window} (the window), got shape {tuple(input.shape)}"
        )
    if not batched:
        input = input.unsqueeze(0)
    columns = F.unfold(input.unsqueeze(2), (1, window), stride=(1, stride))
    return columns.transpose(1, 2), batched


def _as_sequence(rows: Tensor, batched: bool) -> Tensor:
    """(N, L_out, F) -> (N, F, L_out), or (F, L_out) for an unbatched input."""
    output = rows.transpose(1, 2)
    return output if batched else output.squeeze(0)


class ScanningMLP(nn.Module):
    """An MLP applied to every window of ``window`` frames of a sequence: a 1-D CNN.

    The MLP (``self.mlp``: Linear - activation - ... - Linear, no activation after the last
    layer) reads one window flattened channel-major (input index ``c * window + k``) and
    outputs ``out_features`` values. It is applied at window positions 0, stride, 2 stride, ...
    Deck 004: "scanning an input with a network and combining the outcomes is equivalent to
    scanning with individual neurons hierarchically"; here the first-level neurons scan the
    input with a window of ``window`` frames and every higher-level neuron sees only the
    neurons of its own position, so :func:`to_conv1d` turns the network into
    ``Conv1d(C, h1, window, stride)`` followed by 1x1 convolutions.

    Shape: (N, in_channels, L) -> (N, out_features, L_out) (or unbatched (C, L) ->
    (out_features, L_out)) with L_out = floor((L - window) / stride) + 1, L >= window.
    """

    def __init__(
        self,
        in_channels: int,
        window: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        stride: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_positive_int(
            name, in_channels=in_channels, window=window, out_features=out_features, stride=stride
        )
        self.hidden_sizes = _check_sizes(name, "hidden_sizes", hidden_sizes)
        _check_activation(name, activation)
        self.in_channels = in_channels
        self.window = window
        self.out_features = out_features
        self.stride = stride
        self.activation = activation
        widths = (in_channels * window, *self.hidden_sizes, out_features)
        layers: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if index:
                layers.append(ACTIVATIONS[activation]())
            layers.append(nn.Linear(fan_in, fan_out))
        self.mlp = nn.Sequential(*layers)

    def forward(self, input: Tensor) -> Tensor:
        rows, batched = _windows(
            type(self).__name__, input, self.in_channels, self.window, self.stride
        )
        return _as_sequence(self.mlp(rows), batched)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, window={self.window}, "
            f"stride={self.stride}, activation={self.activation!r}"
        )


class SharedWeightLevel(nn.Module):
    """One level of a distributed scanning MLP: the block of weights all its neurons share.

    ``weight`` (out_channels, in_channels, kernel_size) and ``bias`` (out_channels,) have the
    shapes, initialisation and meaning of ``Conv1d(in_channels, out_channels, kernel_size,
    stride)``: a neuron at position q reads positions q * stride ... q * stride + kernel_size - 1
    of the level below.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        # The same initialisation as the Conv1d this level converts to.
        template = nn.Conv1d(in_channels, out_channels, kernel_size, stride)
        self.weight = template.weight
        assert template.bias is not None  # Conv1d has a bias by default
        self.bias: nn.Parameter = template.bias

    def dense(self, positions: int) -> Tensor:
        """The unrolled (Toeplitz) matrix of this level for ``positions`` output neurons.

        D[(o, q), (i, p)] = W[o, i, p - q s] where 0 <= p - q s < K, else 0, with rows
        o * positions + q and columns i * P + p (P = (positions - 1) s + K input positions).
        Written as D = sum_k W[:, :, k] (x) Shift_k with constant 0/1 matrices
        Shift_k[q, p] = [p == q s + k], i.e. a matmul of the shared block with the shift
        matrices, so the gradient flows back to W as the sum over every copy of each weight.
        """
        out_channels, in_channels, kernel = self.weight.shape
        in_positions = (positions - 1) * self.stride + kernel
        shifts = Tensor(_shift_matrices(kernel, self.stride, positions, self.weight.dtype.str))
        unrolled = self.weight.reshape(out_channels * in_channels, kernel) @ shifts
        return (
            unrolled.reshape(out_channels, in_channels, positions, in_positions)
            .permute(0, 2, 1, 3)
            .reshape(out_channels * positions, in_channels * in_positions)
        )

    def dense_bias(self, positions: int) -> Tensor:
        """The bias repeated for each of ``positions`` neurons (index o * positions + q)."""
        repeated = self.bias.reshape(self.out_channels, 1).expand(self.out_channels, positions)
        return repeated.reshape(self.out_channels * positions)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )


@lru_cache(maxsize=64)
def _shift_matrices(kernel: int, stride: int, positions: int, dtype: str) -> np.ndarray:
    """(K, positions * P) 0/1 matrix: row k is Shift_k[q, p] = [p == q stride + k], flattened."""
    in_positions = (positions - 1) * stride + kernel
    shifts = np.zeros((kernel, positions, in_positions), dtype=np.dtype(dtype))
    outputs = np.arange(positions)
    for tap in range(kernel):
        shifts[tap, outputs, outputs * stride + tap] = 1
    shifts = shifts.reshape(kernel, positions * in_positions)
    shifts.flags.writeable = False
    return shifts


class DistributedScanningMLP(nn.Module):
    """The distributed (shared-weight) scanning MLP: a TDNN written as one MLP per window.

    Level-1 neurons each read ``kernel_sizes[0]`` frames; a level-l neuron reads
    ``kernel_sizes[l]`` consecutive outputs of level l-1, which are spaced by ``strides[l-1]``
    of level l-2's positions. Deck 004: "first level neurons scan the input; higher-level
    neurons scan the 'maps' formed by lower-level neurons". All neurons of a level share one
    block of weights, ``levels[l].weight`` (h_l, h_{l-1}, K_l) and ``levels[l].bias`` (h_l):
    the only parameters, mapped 1:1 by :func:`to_conv1d` onto
    ``Conv1d(h_{l-1}, h_l, K_l, stride=s_l)`` per level (activations between levels).

    The forward pass is the MLP view of the same network. One output needs a window of
    R = K_1 + (K_2 - 1) s_1 + (K_3 - 1) s_1 s_2 + ... frames (the receptive field); the window is
    scanned with stride S = s_1 s_2 ... s_L. Within a window, level l has n_l neurons
    (n_L = 1, n_{l-1} = (n_l - 1) s_l + K_l, n_0 = R) and computes
    ``y_l = act(D_l y_{l-1} + b_l)`` with D_l the shared block unrolled into a Toeplitz matrix
    (deck 002's matrix form of a convolution, see :meth:`dense_layers`).

    ``hidden_sizes`` gives h_1 ... h_{L-1} (one fewer than ``kernel_sizes``); the last level
    has ``out_features`` neurons. ``strides`` is one int for every level or one per level.

    Shape: (N, in_channels, L) -> (N, out_features, L_out) (or unbatched (C, L) ->
    (out_features, L_out)) with L_out = floor((L - R) / S) + 1, L >= R.
    """

    def __init__(
        self,
        in_channels: int,
        kernel_sizes: Sequence[int],
        strides: int | Sequence[int],
        hidden_sizes: Sequence[int],
        out_features: int,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_positive_int(name, in_channels=in_channels, out_features=out_features)
        self.kernel_sizes = _check_sizes(name, "kernel_sizes", kernel_sizes, allow_empty=False)
        levels = len(self.kernel_sizes)
        if isinstance(strides, (int, np.integer)) and not isinstance(strides, bool):
            check_positive_int(name, strides=int(strides))
            strides = (int(strides),) * levels
        self.strides = _check_sizes(name, "strides", strides)
        if len(self.strides) != levels:
            raise ValueError(
                f"{name}: strides must have one entry per level ({levels}, as kernel_sizes), "
                f"got {tuple(cast(Sequence[int], strides))}"
            )
        self.hidden_sizes = _check_sizes(name, "hidden_sizes", hidden_sizes)
        if len(self.hidden_sizes) != levels - 1:
            raise ValueError(
                f"{name}: hidden_sizes must have len(kernel_sizes) - 1 = {levels - 1} entries "
                f"(the widths of the levels below the output), got {tuple(hidden_sizes)}"
            )
        _check_activation(name, activation)
        self.in_channels = in_channels
        self.out_features = out_features
        self.activation = activation
        widths = (in_channels, *self.hidden_sizes, out_features)
        self.levels = nn.ModuleList(
            SharedWeightLevel(
                widths[level], widths[level + 1], self.kernel_sizes[level], self.strides[level]
            )
            for level in range(levels)
        )
        self.activations = nn.ModuleList(ACTIVATIONS[activation]() for _ in range(levels - 1))
        # Neurons per level within one window, from the top down: n_L = 1,
        # n_{l-1} = (n_l - 1) s_l + K_l; positions[0] = R, the receptive field in frames.
        positions = [1]
        for kernel, stride in zip(reversed(self.kernel_sizes), reversed(self.strides), strict=True):
            positions.insert(0, (positions[0] - 1) * stride + kernel)
        self.positions: tuple[int, ...] = tuple(positions)
        self.receptive_field = positions[0]
        self.scan_stride = int(np.prod(self.strides))

    def dense_layers(self) -> list[tuple[Tensor, Tensor]]:
        """The (matrix, bias) of every level in the MLP view, built from the shared blocks.

        Level l's matrix D_l has shape (h_l n_l, h_{l-1} n_{l-1}), with
        D_l[(o, q), (i, p)] = W_l[o, i, p - q s_l] for 0 <= p - q s_l < K_l and 0 elsewhere:
        every row is the shared block shifted by s_l positions per neuron, deck 002's unrolled
        (Toeplitz) matrix. The first matrix reads a window flattened channel-major
        (column c R + p); the last gives the out_features outputs of the window.
        """
        return [
            (level.dense(positions), level.dense_bias(positions))
            for level, positions in zip(self.levels, self.positions[1:], strict=True)
        ]

    def forward(self, input: Tensor) -> Tensor:
        rows, batched = _windows(
            type(self).__name__, input, self.in_channels, self.receptive_field, self.scan_stride
        )
        activations = list(self.activations)
        for level, (matrix, bias) in enumerate(self.dense_layers()):
            rows = F.linear(rows, matrix, bias)
            if level < len(activations):
                rows = activations[level](rows)
        return _as_sequence(rows, batched)

    def extra_repr(self) -> str:
        return (
            f"receptive_field={self.receptive_field}, scan_stride={self.scan_stride}, "
            f"activation={self.activation!r}"
        )


def _copy_into(target: nn.Parameter | None, source: Tensor | np.ndarray | None) -> None:
    """Copy values into a parameter, keeping the source's dtype."""
    # The layers built here all have biases: neither side is ever None.
    assert target is not None and source is not None
    target.data = np.array(as_array(source), copy=True)


def to_conv1d(model: ScanningMLP | DistributedScanningMLP) -> nn.Sequential:
    """The equivalent stack of ``Conv1d`` layers (activations kept), weights copied.

    - :class:`ScanningMLP`: the first Linear (h1, C * window) becomes
      ``Conv1d(C, h1, window, stride)`` with the weight reshaped to (h1, C, window) (the
      channel-major window order makes this a plain reshape); every later Linear (h', h)
      becomes a 1x1 ``Conv1d(h, h', 1)``, since it only sees the neurons of its own position.
    - :class:`DistributedScanningMLP`: level l becomes ``Conv1d(h_{l-1}, h_l, K_l,
      stride=s_l)`` holding that level's shared block unchanged.

    The result's child indices mirror the layers (conv, activation, conv, ...); outputs equal
    the model's for every input.
    """
    layers: list[nn.Module] = []
    if isinstance(model, ScanningMLP):
        linears = [layer for layer in model.mlp if isinstance(layer, nn.Linear)]
        for index, linear in enumerate(linears):
            if index:
                layers.append(ACTIVATIONS[model.activation]())
                conv = nn.Conv1d(linear.in_features, linear.out_features, 1)
                weight = linear.weight.data.reshape(linear.out_features, linear.in_features, 1)
            else:
                conv = nn.Conv1d(
                    model.in_channels, linear.out_features, model.window, stride=model.stride
                )
                weight = linear.weight.data.reshape(
                    linear.out_features, model.in_channels, model.window
                )
            _copy_into(conv.weight, weight)
            _copy_into(conv.bias, linear.bias)
            layers.append(conv)
    elif isinstance(model, DistributedScanningMLP):
        for index, level in enumerate(model.levels):
            if index:
                layers.append(ACTIVATIONS[model.activation]())
            conv = nn.Conv1d(
                level.in_channels, level.out_channels, level.kernel_size, stride=level.stride
            )
            _copy_into(conv.weight, level.weight.data)
            _copy_into(conv.bias, level.bias)
            layers.append(conv)
    else:
        raise TypeError(
            "to_conv1d: model must be a ScanningMLP or a DistributedScanningMLP, got "
            f"{type(model).__name__}"
        )
    return nn.Sequential(*layers)


def to_scanning_mlp(model: DistributedScanningMLP) -> ScanningMLP:
    """The distributed network as a plain :class:`ScanningMLP` with dense, unrolled weights.

    Window R (the receptive field), stride S = prod(strides), hidden sizes h_l n_l; each
    Linear holds the Toeplitz matrix D_l of :meth:`DistributedScanningMLP.dense_layers`. The
    result has many more parameters (the zeros and the copies of the shared weights become free
    parameters), but computes the same function.
    """
    if not isinstance(model, DistributedScanningMLP):
        raise TypeError(
            f"to_scanning_mlp: model must be a DistributedScanningMLP, got {type(model).__name__}"
        )
    hidden = [
        level.out_channels * positions
        for level, positions in zip(list(model.levels)[:-1], model.positions[1:-1], strict=True)
    ]
    scanning = ScanningMLP(
        model.in_channels,
        model.receptive_field,
        hidden,
        model.out_features,
        stride=model.scan_stride,
        activation=model.activation,
    )
    linears = [layer for layer in scanning.mlp if isinstance(layer, nn.Linear)]
    for linear, (matrix, bias) in zip(linears, model.dense_layers(), strict=True):
        _copy_into(linear.weight, matrix.data)
        _copy_into(linear.bias, bias)
    return scanning
