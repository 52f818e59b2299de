"""``DistributedDataParallel``: one model per process, its gradients averaged over processes.

Each process runs the forward and backward pass on its share of the global batch (see
``convprop.distributed.DistributedSampler``), then :meth:`DistributedDataParallel.
synchronize_gradients` replaces every parameter's gradient by its mean over the processes;
every process then takes the same optimizer step from the same parameters (broadcast from
rank 0 when the wrapper is built), so the models stay equal, and equal to one process's
trained on the whole batch.

**Buckets.** The gradients are not reduced one parameter at a time (a ResNet-20 has 65
parameters: 65 collectives, each paying MPI's latency) but in a few large contiguous
buckets: at the first synchronisation the parameters are laid out, in reverse order of
registration (the order backward produces them in) and by dtype, into float buffers of at
most ``bucket_cap_mb`` megabytes; each synchronisation copies the gradients in, reduces each
buffer in place with one ``Allreduce``, divides by the number of processes and copies the
means back. The first bucket also carries, at its end, one flag per parameter (whether this
process has a gradient for it), so that no further collective is needed: a parameter that
no process has a gradient for keeps ``grad = None``; one that only some processes have a
gradient for counts as a zero gradient on the others.

**When.** Explicitly, after ``loss.backward()`` and before ``optimizer.step()``: convprop's
autograd has no hooks on gradient accumulation, and the explicit call is also where a loop
doing gradient accumulation over several batches says when to reduce. The reduction is not
overlapped with the backward pass (see BENCHMARKS.md for what the reduction costs per step).

**state_dict.** ``state_dict()`` and ``load_state_dict()`` are the wrapped module's, without
PyTorch's ``module.`` prefix, so a checkpoint written by a distributed run loads into the
plain model and a run resumes on any number of processes. ``named_parameters()`` and
``parameters()`` are those of a Module holding ``module`` (names with ``module.``), as in
PyTorch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from convprop.autograd import Tensor
from convprop.nn.module import IncompatibleKeys, Module, Parameter

if TYPE_CHECKING:
    from convprop.distributed import ProcessGroup

__all__ = ["DistributedDataParallel"]

_MEGABYTE = 1024 * 1024


@dataclass
class _Bucket:
    """A contiguous buffer holding the gradients of ``parameters`` at ``offsets`` (and, in
    the first bucket only, every parameter's presence flag after them)."""

    parameters: list[Parameter]
    offsets: list[int]
    gradient_size: int
    buffer: np.ndarray


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training, as ``torch.nn.parallel.
    DistributedDataParallel``.

    Args:
        module: the model; its parameters and buffers are overwritten with process 0's on
            construction (``init_sync``), so every process starts from the same weights.
        process_group: the processes to average over (default: the group of
            ``convprop.distributed.init_process_group``).
        bucket_cap_mb: the largest bucket of gradients reduced by one collective, in
            megabytes (PyTorch's default, 25).
        broadcast_buffers: copy process 0's buffers (batch norm's running statistics) to
            every process at the start of each forward in training mode, as PyTorch does;
            they then stay equal where each process updates them from its own share.
        init_sync: broadcast process 0's parameters and buffers on construction.

    A training step::

        model = DistributedDataParallel(net)
        loss = F.cross_entropy(model(inputs), labels)  # this process's share of the batch
        optimizer.zero_grad()
        loss.backward()
        model.synchronize_gradients()  # every gradient: its mean over the processes
        optimizer.step()

    Without a process group (or with one process) ``synchronize_gradients`` changes nothing,
    so the same loop runs on one process unchanged.
    """

    def __init__(
        self,
        module: Module,
        process_group: ProcessGroup | None = None,
        bucket_cap_mb: float = 25.0,
        broadcast_buffers: bool = True,
        init_sync: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel: module must be a Module, got {type(module).__name__}"
            )
        if (
            isinstance(bucket_cap_mb, bool)
            or not isinstance(bucket_cap_mb, (int, float))
            or not bucket_cap_mb > 0
        ):
            raise ValueError(
                "DistributedDataParallel: bucket_cap_mb must be a positive number of megabytes, "
                f"got {bucket_cap_mb!r}"
            )
        self.module = module
        self.process_group = process_group
        self.bucket_cap_mb = float(bucket_cap_mb)
        self.broadcast_buffers = broadcast_buffers
        self._buckets: list[_Bucket] = []
        self._layout: tuple[tuple[int, str, tuple[int, ...]], ...] = ()
        group = self._group()
        if init_sync and group is not None:
            from convprop.distributed import broadcast_module

            broadcast_module(module, 0, group)

    def _group(self) -> ProcessGroup | None:
        """The group to average over, or None where there is nothing to average (no group,
        or a world of one)."""
        group = self.process_group
        if group is None:
            from convprop import distributed

            if not distributed.is_initialized():
                return None
            group = distributed.get_process_group()
        return group if group.size > 1 else None

    # ------------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and self.broadcast_buffers:
            self.synchronize_buffers()
        return self.module(*args, **kwargs)

    def synchronize_buffers(self) -> None:
        """Overwrite every buffer with process 0's (before an evaluation, so that every
        process evaluates the model that process 0 saves)."""
        group = self._group()
        if group is None:
            return
        # One broadcast per dtype, not one per buffer: a ResNet-20 has 57 buffers.
        by_dtype: OrderedDict[np.dtype, list[Tensor]] = OrderedDict()
        for buffer in self.module.buffers():
            by_dtype.setdefault(buffer.dtype, []).append(buffer)
        for buffers in by_dtype.values():
            packed = np.concatenate([buffer.data.reshape(-1) for buffer in buffers])
            group.broadcast(packed, 0)
            offset = 0
            for buffer in buffers:
                values = packed[offset : offset + buffer.data.size].reshape(buffer.shape)
                offset += buffer.data.size
                if buffer.data.flags.writeable:
                    np.copyto(buffer.data, values)
                else:
                    buffer.data = values.copy()

    # ------------------------------------------------------------------ gradients
    def _trained_parameters(self) -> list[Parameter]:
        """The parameters that take gradients, in reverse order of registration."""
        return [p for p in reversed(list(self.module.parameters())) if p.requires_grad]

    def _build_buckets(self, parameters: list[Parameter]) -> None:
        """Lay ``parameters`` out in buckets of one dtype and at most ``bucket_cap_mb``."""
        cap = self.bucket_cap_mb * _MEGABYTE
        by_dtype: OrderedDict[np.dtype, list[list[Parameter]]] = OrderedDict()
        for param in parameters:
            groups = by_dtype.setdefault(param.dtype, [[]])
            current = groups[-1]
            used = sum(p.data.nbytes for p in current)
            if current and used + param.data.nbytes > cap:
                groups.append([param])
            else:
                current.append(param)
        self._buckets = []
        for dtype, groups in by_dtype.items():
            for members in groups:
                offsets = [0]
                for param in members:
                    offsets.append(offsets[-1] + param.data.size)
                extra = len(parameters) if not self._buckets else 0
                buffer = np.empty(offsets[-1] + extra, dtype=dtype)
                self._buckets.append(_Bucket(members, offsets, offsets[-1], buffer))

    def _current_buckets(self) -> list[_Bucket]:
        parameters = self._trained_parameters()
        layout = tuple((id(p), p.dtype.str, p.shape) for p in parameters)
        if layout != self._layout:  # first call, or the model changed (``.double()``)
            self._build_buckets(parameters)
            self._layout = layout
        return self._buckets

    def synchronize_gradients(self) -> None:
        """Replace every parameter's gradient with its mean over the processes, in place.

        The mean weighs every process alike, which is right when the shares of the global
        batch are equal. Where they are not (the last, partial batch of an epoch), scale each
        process's mean loss by ``convprop.distributed.share_weight`` before ``backward``: the
        mean of the processes' gradients is then the gradient of the mean loss over the whole
        batch, also through a ``SyncBatchNorm``, whose gradients mix the processes' losses
        (so that weighting the gradients themselves would not do). A process with an empty
        share skips its forward and backward passes but must still call this (its weight is
        0, its gradients count as zeros).

        Every process must call it at the same point of the step.
        """
        group = self._group()
        if group is None:
            return
        buckets = self._current_buckets()
        if not buckets:
            return
        parameters = [param for bucket in buckets for param in bucket.parameters]
        head = buckets[0]
        flags = head.buffer[head.gradient_size :]
        flags[...] = [param.grad is not None for param in parameters]
        for bucket in buckets:
            self._pack(bucket)
            group.all_reduce_sum(bucket.buffer)
            bucket.buffer[: bucket.gradient_size] /= group.size
        present = iter(flags > 0)
        for bucket in buckets:
            self._unpack(bucket, present)

    @staticmethod
    def _pack(bucket: _Bucket) -> None:
        for param, start, end in zip(
            bucket.parameters, bucket.offsets, bucket.offsets[1:], strict=False
        ):
            target = bucket.buffer[start:end]
            if param.grad is None:
                target[...] = 0
            else:
                target[...] = param.grad.data.reshape(-1)

    @staticmethod
    def _unpack(bucket: _Bucket, present: Any) -> None:
        for param, start, end in zip(
            bucket.parameters, bucket.offsets, bucket.offsets[1:], strict=False
        ):
            if not next(present):
                continue
            mean = bucket.buffer[start:end].reshape(param.shape)
            grad = param.grad
            if grad is None or grad.data.shape != param.shape or not grad.data.flags.writeable:
                param.grad = Tensor(mean.copy())
            else:
                np.copyto(grad.data, mean)

    # ------------------------------------------------------------------ state
    def state_dict(self, prefix: str = "") -> OrderedDict[str, np.ndarray]:
        """The wrapped module's state dict (no ``module.`` prefix)."""
        return self.module.state_dict(prefix)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Load into the wrapped module (keys without a ``module.`` prefix)."""
        return self.module.load_state_dict(state_dict, strict)

    def extra_repr(self) -> str:
        return f"bucket_cap_mb={self.bucket_cap_mb:g}"
