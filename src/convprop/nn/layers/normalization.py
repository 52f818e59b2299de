"""Batch normalisation layers (``BatchNorm1d``, ``BatchNorm2d``) with PyTorch's buffers."""

from __future__ import annotations

from typing import Any

import numpy as np

from convprop.autograd import Tensor
from convprop.nn import functional as F
from convprop.nn import init
from convprop.nn.module import Module, Parameter


class _BatchNorm(Module):
    _allowed_ndim: tuple[int, ...]

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features <= 0:
            raise ValueError(
                f"{type(self).__name__}: num_features must be a positive int, got {num_features!r}"
            )
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = np.dtype(dtype or np.float32)
        if affine:
            self.weight: Parameter | None = Parameter(np.ones(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
        if affine and bias:
            self.bias: Parameter | None = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype=dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype=dtype)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def _count_batch(self) -> float:
        """Count a training batch in ``num_batches_tracked``; the running statistics' factor.

        As PyTorch: momentum=None means a cumulative moving average, 1 / batches seen.
        """
        average_factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                average_factor = 1.0 / float(self.num_batches_tracked.data)
        return average_factor

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim not in self._allowed_ndim:
            expected = " or ".join(f"{n}D" for n in self._allowed_ndim)
            raise ValueError(
                f"{type(self).__name__}: expected {expected} input (got {input.ndim}D input)"
            )
        average_factor = self._count_batch()
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch_stats,
            average_factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Normalises each channel of (N, C) or (N, C, L) over the batch (and length):
    y = (x - mean) / sqrt(var + eps) * gamma + beta; running statistics use the unbiased
    batch variance."""

    _allowed_ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Normalises each channel of (N, C, H, W) over the batch and positions:
    y = (x - mean) / sqrt(var + eps) * gamma + beta; running statistics use the unbiased
    batch variance."""

    _allowed_ndim = (4,)
