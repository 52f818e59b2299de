"""``SyncBatchNorm``: batch norm whose training statistics are those of the global batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convprop.autograd import Tensor, apply, array_of
from convprop.nn.layers.normalization import _BatchNorm
from convprop.nn.module import Module
from convprop.ops import sync_batch_norm as sync_ops

if TYPE_CHECKING:
    from convprop.distributed import ProcessGroup


class SyncBatchNorm(_BatchNorm):
    """Batch norm over the batch of every process together, as ``torch.nn.SyncBatchNorm``.

    In training mode, with a process group of more than one process, each channel is
    normalised with the mean and variance of the *global* batch (the shares of all processes
    concatenated), and the backward pass uses the gradient sums of the global batch, so the
    output, dL/dx and the running statistics are those of ``BatchNorm2d`` (or ``1d``, ``3d``)
    on the concatenated batch; dL/dweight and dL/dbias are this process's parts, which
    ``DistributedDataParallel``'s averaging adds up. The derivation, and why the statistics
    travel as counts, means and squared deviations rather than sums of squares, is in
    ``convprop.ops.sync_batch_norm``. Each training forward costs one ``Allgather`` of
    2C + 1 numbers, each backward one ``Allreduce`` of 2C.

    In evaluation mode, without a process group, or in a world of one process, it is exactly
    the plain batch norm.

    Args:
        num_features: C, the number of channels.
        eps, momentum, affine, track_running_stats, bias: as ``BatchNorm2d``.
        process_group: the processes to synchronise over (default: the group of
            ``convprop.distributed.init_process_group``, when there is one).

    Shape:
        input (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W); the output has its shape.
        A process's N may be 0 (it then contributes nothing to the statistics).
    """

    _allowed_ndim = (2, 3, 4, 5)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: ProcessGroup | None = None,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias
        )
        self.process_group = process_group

    def _synchronising_group(self) -> ProcessGroup | None:
        """The group to exchange statistics with in this forward, or None for plain batch
        norm (evaluation mode, no group, a world of one)."""
        if not self.training:
            return None
        group = self.process_group
        if group is None:
            from convprop import distributed

            if not distributed.is_initialized():
                return None
            group = distributed.get_process_group()
        return group if group.size > 1 else None

    def forward(self, input: Tensor) -> Tensor:
        group = self._synchronising_group()
        if group is None or input.ndim not in self._allowed_ndim:
            return super().forward(input)
        average_factor = self._count_batch()
        track = self.track_running_stats
        return apply(
            sync_ops.sync_batch_norm,
            (input, self.weight, self.bias),
            array_of("sync_batch_norm", "running_mean", self.running_mean if track else None),
            array_of("sync_batch_norm", "running_var", self.running_var if track else None),
            average_factor,
            self.eps,
            group,
        )

    @classmethod
    def convert_sync_batchnorm(
        cls, module: Module, process_group: ProcessGroup | None = None
    ) -> Module:
        """``module`` with every ``BatchNorm1d``/``BatchNorm2d`` replaced by a
        ``SyncBatchNorm`` that keeps its parameters and buffers (the same tensors, so an
        optimizer built on the model still updates them) and its training mode.

        Returns the converted module: ``module`` itself, changed in place, unless ``module``
        is a batch norm, when it is the new ``SyncBatchNorm``.

        >>> from convprop import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        >>> model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        >>> type(model[1]).__name__, list(model.state_dict())[2:4]
        ('SyncBatchNorm', ['1.weight', '1.bias'])
        """
        converted: dict[int, Module] = {}

        def convert(child: Module) -> Module:
            if id(child) in converted:  # a module used twice stays one module
                return converted[id(child)]
            result = child
            if isinstance(child, _BatchNorm) and not isinstance(child, SyncBatchNorm):
                result = cls._from_batch_norm(child, process_group)
            converted[id(child)] = result
            for name, grandchild in list(result._modules.items()):
                if grandchild is not None:
                    result._modules[name] = convert(grandchild)
            return result

        return convert(module)

    @classmethod
    def _from_batch_norm(
        cls, batch_norm: _BatchNorm, process_group: ProcessGroup | None
    ) -> SyncBatchNorm:
        sync = cls(
            batch_norm.num_features,
            batch_norm.eps,
            batch_norm.momentum,
            batch_norm.affine,
            batch_norm.track_running_stats,
            process_group,
            bias=batch_norm.bias is not None,
        )
        for name, parameter in batch_norm._parameters.items():
            sync.register_parameter(name, parameter)
        for name, buffer in batch_norm._buffers.items():
            sync.register_buffer(name, buffer, name not in batch_norm._non_persistent_buffers)
        sync.train(batch_norm.training)
        return sync
