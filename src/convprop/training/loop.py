"""``fit``: set a run up (or pick it up again), then train, evaluate and commit each epoch.

A run killed at any moment leaves its last committed epoch loadable (``checkpoint``), and
``resume`` continues from it to bitwise the weights an uninterrupted run with the same seed
reaches: the model, optimizer, scheduler and every random generator are restored, and the data
must be the same (its fingerprint is compared).

Under a process group (``convprop train --distributed`` in an ``mpirun`` job) the same code
trains data-parallel: ``batch_size`` is the global batch; every process draws the same batches
and augmentation, computes on its strided share, and ``DistributedDataParallel`` averages the
gradients, so N processes take the steps of one. Process 0 alone opens, writes and logs the
run directory; the others receive its state (``convprop.training.parallel`` says how the
setup agrees, so an error is reported once). See docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import convprop as cp
from convprop import distributed as dist
from convprop import nn, optim
from convprop import random as cp_random
from convprop.data import DataError, DataLoader, Normalize, build_augmentation
from convprop.data.canvases import IGNORE
from convprop.data.transforms import Compose
from convprop.io.files import atomic_write_bytes
from convprop.nn import functional as F
from convprop.nn.parallel import DistributedDataParallel
from convprop.training import parallel, rundir
from convprop.training.checkpoint import (
    Checkpoint,
    EpochMetrics,
    commit_epoch,
    read_checkpoint,
    restore_training_state,
)
from convprop.training.config import ConfigError, TrainConfig
from convprop.training.data import PreparedData, prepare_data
from convprop.training.evaluate import (
    confusion_matrix,
    evaluate_arrays,
    evaluate_totals,
    format_number,
    segmentation_scores,
)
from convprop.training.registry import (
    PER_BATCH_SCHEDULERS,
    build_model,
    build_optimizer,
    build_scheduler,
    is_onnx,
)
from convprop.training.rundir import RunDirectoryError


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became non-finite); the last checkpoint is kept."""


@dataclass
class RunResult:
    """What ``fit`` returns: the trained model, the metrics per epoch and where they are."""

    model: nn.Module
    history: list[EpochMetrics]
    run_dir: Path

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy if self.history else float("nan")


def fit(
    config: TrainConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    epochs: int | None = None,
) -> RunResult:
    """Train ``config.model`` on ``config.data``, checkpointing into ``run_dir`` every epoch.

    ``run_dir`` None makes a new ``runs/<date>-<time>`` directory. With ``resume`` the
    configuration comes from the run's checkpoint (``config`` is ignored) and training
    continues after its last committed epoch, up to ``epochs`` if given. With ``overwrite`` an
    existing run in ``run_dir`` is replaced (and kept if the new run fails before its first
    epoch is committed).
    """
    if resume and overwrite:
        raise RunDirectoryError("choose either --resume or --overwrite, not both")
    if resume and run_dir is None:
        raise RunDirectoryError("resume needs the run directory to continue")
    if not parallel.is_leader():  # process 0 speaks for the job
        progress, log = False, _silent
    with contextlib.ExitStack() as stack:
        target = Path(run_dir) if run_dir is not None else None

        def open_run() -> tuple[TrainConfig, Checkpoint | None]:
            """Process 0: check (and lock) the run directory; the configuration to train."""
            if target is not None and target.exists():
                if not target.is_dir():
                    raise RunDirectoryError(f"{target}: exists and is not a directory")
                stack.enter_context(rundir.locked(target))
                rundir.recover(target)
            if resume:
                assert target is not None
                rundir.check_resumable(target)
                checkpoint = read_checkpoint(target)
                return resumed_config(checkpoint, epochs, log), checkpoint
            config.validate()
            if target is not None:
                rundir.check_new_run(target, overwrite)
            return config, None

        config, checkpoint = parallel.from_leader(open_run)
        # Built before the directory is touched: a model that does not fit the data is refused
        # with nothing created or set aside.
        run = parallel.together(lambda: _Run.build(config, checkpoint, target, progress, log))
        run.share_state()

        def create_run_dir() -> tuple[Path, bool, Path | None]:
            """Process 0: the run directory, created (and locked) if new, an overwritten
            run's files set aside."""
            directory = target if target is not None else rundir.new_run_dir()
            created = target is None or not target.exists()
            if target is not None and created:
                directory.mkdir(parents=True)
            if created:
                stack.enter_context(rundir.locked(directory))
            return directory, created, rundir.set_aside(directory) if overwrite else None

        directory, created, set_aside = parallel.from_leader(create_run_dir)
        try:
            if checkpoint is None and is_onnx(config.model) and parallel.is_leader():
                # The run keeps its own copy: it resumes and evaluates without the original.
                source = Path(config.model).read_bytes()
                atomic_write_bytes(directory / rundir.SOURCE_ONNX, source)
            run.train(directory, on_first_commit=lambda: _drop(set_aside))
        except BaseException:
            if not run.committed and parallel.is_leader():
                if set_aside is not None:
                    rundir.put_back(directory, set_aside)
                elif created:
                    _remove_new_run(directory)
            raise
        return RunResult(run.model, run.history, directory)


def _silent(message: str) -> None:
    """The log of the processes other than 0 (they train, but do not speak)."""


def resumed_config(
    checkpoint: Checkpoint, epochs: int | None, log: Callable[[str], None]
) -> TrainConfig:
    """The saved configuration, with the total number of epochs changed to ``epochs``."""
    config = checkpoint.config
    done = checkpoint.epoch
    run_dir = checkpoint.path.parent
    if epochs is not None and epochs != config.epochs:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError("epochs", f"must be a positive integer, got {epochs!r}")
        if epochs < done:
            raise RunDirectoryError(
                f"{run_dir}: {done} epochs are done already; --epochs {epochs} would end "
                "before them"
            )
        if config.scheduler in PER_BATCH_SCHEDULERS:
            raise RunDirectoryError(
                f"{run_dir}: its {config.scheduler} schedule was built for {config.epochs} "
                "epochs and cannot be stretched; resume without --epochs"
            )
        log(f"{run_dir}: training on to {epochs} epochs (was {config.epochs})")
        config.epochs = epochs
    return config


def model_source(config: TrainConfig, run_dir: Path | None) -> str:
    """What builds a run's model: a zoo name, or an ONNX file (the run's own copy, once it
    has one)."""
    if is_onnx(config.model) and run_dir is not None:
        copy = run_dir / rundir.SOURCE_ONNX
        if copy.is_file():
            return str(copy)
    return config.model


def _drop(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_new_run(run_dir: Path) -> None:
    """Remove a directory this run created and never committed an epoch into."""
    for name in rundir.existing_run_files(run_dir):
        target = run_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    with contextlib.suppress(OSError):
        run_dir.rmdir()


class _Run:
    """One run's model, optimizer, data and state, from setup to its last epoch's commit."""

    def __init__(
        self,
        config: TrainConfig,
        data: PreparedData,
        checkpoint: Checkpoint | None,
        progress: bool,
        log: Callable[[str], None],
        model_name: str,
    ) -> None:
        """The run on this process; ``build`` checks and loads what it needs first."""
        self.config, self.data = config, data
        self.run_dir = checkpoint.path.parent if checkpoint is not None else Path()
        self.progress, self.log = progress, log
        self.dtype = np.dtype(config.dtype)
        self.normalize = Normalize(data.mean, data.std)
        # A segmentation mask's unlabelled pixels; no class index of a classifier is -100.
        self.ignore_index = IGNORE if config.task == "segment" else -100
        cp.manual_seed(config.seed)
        self.model = build_model(model_name, data.input_shape, len(data.classes)).to(self.dtype)
        if config.sync_bn:  # the very Parameters, in SyncBatchNorm layers: same optimizer
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        # The averaging of gradients (a no-op on one process); its state_dict is the model's.
        # Process 0's weights reach the others in ``share_state``.
        self.ddp = DistributedDataParallel(self.model, init_sync=False)
        self.optimizer = build_optimizer(
            config.optimizer,
            list(self.model.parameters()),
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        self.scheduler = build_scheduler(
            config.scheduler,
            self.optimizer,
            epochs=config.epochs,
            steps_per_epoch=math.ceil(len(data.train) / config.batch_size),
            lr=config.learning_rate,
        )
        self.generators = {
            "shuffle": np.random.default_rng([config.seed, 1]),
            "augment": np.random.default_rng([config.seed, 2]),
        }
        self.history: list[EpochMetrics] = []
        self.best = (-1.0, 0)  # (test accuracy, or a segmenter's mean IoU; epoch)
        self.committed = checkpoint is not None
        if checkpoint is not None:
            # Only process 0 reads the run directory; the others get its state (share_state).
            if parallel.is_leader():
                self.generators = restore_training_state(
                    checkpoint, self.model, self.optimizer, self.scheduler
                )
            self.history = list(checkpoint.history)
            self.best = (checkpoint.best_test_accuracy, checkpoint.best_epoch or 0)

    @classmethod
    def build(
        cls,
        config: TrainConfig,
        checkpoint: Checkpoint | None,
        target: Path | None,
        progress: bool,
        log: Callable[[str], None],
    ) -> _Run:
        """Load the data and build the run on this process (no collectives: see
        ``parallel.together``); a distributed run's batch size must divide evenly."""
        world = parallel.world_size()
        dist.check_batch_size(config.batch_size, world)
        data = prepare_data(config)
        if checkpoint is not None and checkpoint.fingerprint not in (None, data.fingerprint()):
            raise DataError(
                f"{config.data}: the training data changed since {target} started (its "
                "fingerprint differs); resume needs the same data"
            )
        last_batch = len(data.train) % config.batch_size
        if config.sync_bn and 0 < last_batch < world:
            # A process with an empty share could not join SyncBatchNorm's exchange.
            raise ConfigError(
                "sync_bn",
                f"needs every process to get a sample of each batch, but the last batch of an "
                f"epoch holds {last_batch} of {len(data.train)} training samples (batch size "
                f"{config.batch_size}) for {world} processes; choose a --limit or --batch-size "
                f"that leaves 0 or at least {world}",
            )
        source = model_source(config, target if checkpoint is not None else None)
        return cls(config, data, checkpoint, progress, log, source)

    def share_state(self) -> None:
        """Give every process process 0's model, optimizer, scheduler and random generators
        (at the start, and on resume, when only process 0 read the checkpoint), and check
        that every process holds the same data."""
        if parallel.world_size() == 1:
            return
        group = dist.get_process_group()
        fingerprints = group.all_gather_object(self.data.fingerprint())
        parallel.together(lambda: _check_same_data(fingerprints, self.config.data))
        dist.broadcast_module(self.model)
        dist.broadcast_optimizer(self.optimizer)
        box: list[Any] = [
            None if self.scheduler is None else self.scheduler.state_dict(),
            {name: g.bit_generator.state for name, g in self.generators.items()},
            cp_random.get_state(),
        ]
        dist.broadcast_object_list(box)
        if not parallel.is_leader():
            scheduler_state, generator_states, convprop_state = box
            if self.scheduler is not None:
                self.scheduler.load_state_dict(scheduler_state)
            for name, state in generator_states.items():
                self.generators[name].bit_generator.state = state
            cp_random.set_state(convprop_state)

    def train(self, run_dir: Path, on_first_commit: Callable[[], None]) -> None:
        """Train the remaining epochs into ``run_dir``, committing each, then draw the plots;
        ``on_first_commit`` is called when the run commits its very first epoch."""
        self.run_dir = run_dir
        config = self.config
        augmentation = augmentation_for(self.data, config.augment, self.generators["augment"])
        loader = DataLoader(
            self.data.train,
            config.batch_size,
            shuffle=True,
            generator=self.generators["shuffle"],
            num_workers=config.num_workers,
            # Started once for all epochs, not once each.
            persistent_workers=config.num_workers > 0,
        )
        done = len(self.history)
        if done >= config.epochs:
            self.log(
                f"{self.run_dir}: all {done} of {config.epochs} epochs are done; nothing to resume"
                + (
                    ""
                    if config.scheduler in PER_BATCH_SCHEDULERS
                    else " (pass --epochs N to go on)"
                )
            )
        predictions: np.ndarray | None = None
        for epoch in range(done + 1, config.epochs + 1):
            started = time.perf_counter()
            train_loss, train_accuracy = self.train_epoch(epoch, loader, augmentation)
            lr_used = self.optimizer.param_groups[0]["lr"]
            test_loss, predictions = self.evaluate_test()
            test_accuracy, score, extra = self.test_scores(predictions)
            self.step_epoch_scheduler(test_loss)
            metrics = EpochMetrics(
                epoch, train_loss, train_accuracy, test_loss, test_accuracy, lr_used, extra
            )
            self.history.append(metrics)
            improved = score > self.best[0]
            if improved:
                self.best = (score, epoch)
            if parallel.is_leader():
                commit_epoch(
                    self.run_dir,
                    config,
                    self.data,
                    self.model,
                    self.optimizer,
                    self.scheduler,
                    self.history,
                    self.best,
                    improved,
                    self.generators,
                )
                if not self.committed:
                    on_first_commit()
            self.committed = True
            self.log(
                f"epoch {epoch:>3}/{config.epochs}  train loss {format_number(train_loss)} acc "
                f"{train_accuracy:.4f}  test loss {format_number(test_loss)} acc "
                f"{test_accuracy:.4f}"
                + (f" miou {extra['test_mean_iou']:.4f}" if extra else "")
                + f"  lr {lr_used:.3g}  {time.perf_counter() - started:.1f}s"
            )
        if predictions is None:  # resumed with every epoch already done
            _, predictions = self.evaluate_test()
        if not parallel.is_leader():
            return
        write_plots(
            self.run_dir,
            self.model,
            self.data,
            self.history,
            predictions,
            self.normalize,
            self.ignore_index,
        )

    def evaluate_test(self) -> tuple[float, np.ndarray]:
        """The mean test loss and every test prediction. A distributed run evaluates a
        contiguous slice on each process and adds the sums up: the predictions, hence the
        accuracy and the confusion matrix, are exactly one process's; the loss is equal to
        rounding (its sum is added in another order)."""
        test = self.data.test
        if parallel.world_size() == 1:
            return evaluate_arrays(
                self.model,
                test.inputs,
                test.labels,
                self.normalize,
                self.dtype,
                ignore_index=self.ignore_index,
            )
        # Local batch norm statistics differ between processes: evaluate (and so save)
        # process 0's, as DistributedDataParallel does.
        self.ddp.synchronize_buffers()
        part = dist.shard_range(len(test.labels))
        loss_sum, counted, predictions = evaluate_totals(
            self.model,
            test.inputs[part],
            test.labels[part],
            self.normalize,
            self.dtype,
            ignore_index=self.ignore_index,
        )
        total = dist.all_reduce_metrics({"loss_sum": loss_sum, "count": counted})
        return total["loss_sum"] / max(1, total["count"]), dist.gather_shards(predictions)

    def test_scores(self, predictions: np.ndarray) -> tuple[float, float, dict[str, float]]:
        """The test accuracy, the score that picks the best epoch (the accuracy; a segmenter's
        mean IoU) and a segmenter's further metrics.csv columns."""
        labels = self.data.test.labels
        if self.config.task != "segment":
            accuracy = float((predictions == labels).mean())
            return accuracy, accuracy, {}
        confusion = confusion_matrix(labels, predictions, len(self.data.classes), self.ignore_index)
        extra = segmentation_scores(confusion, self.data.classes)
        return extra["test_pixel_accuracy"], extra["test_mean_iou"], extra

    def train_epoch(
        self,
        epoch: int,
        loader: DataLoader,
        augmentation: Callable[[np.ndarray], np.ndarray] | None,
    ) -> tuple[float, float]:
        """One pass over the training data; the mean loss and accuracy."""
        self.ddp.train()
        step = self._step if parallel.world_size() == 1 else self._distributed_step
        loss_sum, correct, seen, images = 0.0, 0, 0, 0
        started = time.perf_counter()
        bar = _progress_bar(self.progress, len(loader), f"epoch {epoch}/{self.config.epochs}")
        with bar:
            for batch_index, (inputs, labels) in enumerate(loader, start=1):
                images += len(labels)
                batch_loss_sum, batch_correct, batch_seen = step(
                    inputs, labels, augmentation, epoch, batch_index
                )
                loss_sum += batch_loss_sum
                correct += batch_correct
                seen += batch_seen
                rate = images / max(time.perf_counter() - started, 1e-9)
                shown = format_number(loss_sum / max(seen, 1))
                bar.set_postfix_str(f"loss {shown}  {rate:.0f} img/s")
                bar.update(1)
        return loss_sum / max(seen, 1), correct / max(seen, 1)

    def _step(
        self,
        inputs: np.ndarray,
        labels: np.ndarray,
        augmentation: Callable[[np.ndarray], np.ndarray] | None,
        epoch: int,
        batch_index: int,
    ) -> tuple[float, int, int]:
        """One optimizer step on a batch; its loss sum, correct predictions and count, per
        sample or per labelled pixel of a segmentation mask."""
        if augmentation is not None:
            inputs = augmentation(inputs)
        logits = self.model(_to_tensor(self.normalize(inputs), self.dtype))
        loss = F.cross_entropy(logits, cp.from_numpy(labels), ignore_index=self.ignore_index)
        value = float(loss.item())
        if not math.isfinite(value):
            raise TrainingError(self._non_finite(value, epoch, batch_index))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.config.scheduler in PER_BATCH_SCHEDULERS:
            self.scheduler.step()
        counted = labels != self.ignore_index
        seen = int(counted.sum())
        correct = int(((np.argmax(logits.numpy(), axis=1) == labels) & counted).sum())
        return value * seen, correct, seen

    def _distributed_step(
        self,
        inputs: np.ndarray,
        labels: np.ndarray,
        augmentation: Callable[[np.ndarray], np.ndarray] | None,
        epoch: int,
        batch_index: int,
    ) -> tuple[float, int, int]:
        """``_step`` on this process's share of the global batch ``inputs``, ``labels``: the
        same optimizer step on every process, and the step's figures summed over them.

        Each process's mean loss is weighted by its share of the batch's counted samples (or
        labelled pixels), ``seen * N / batch_seen``, so that the mean of the processes'
        gradients is the gradient of the mean loss over the whole batch, as one process
        computes it, also when the shares differ (the last batch of an epoch; masks with
        more or fewer unlabelled pixels). The loss is weighted rather than the gradients
        because through ``SyncBatchNorm`` each process's gradients mix every process's loss.

        The augmentation draws for the whole batch, as one process's, but transforms the
        share's images only (``share``): the images are one process's, independent of N.
        """
        world = parallel.world_size()
        count = len(labels)
        batch_seen = int(np.count_nonzero(labels != self.ignore_index))
        positions = slice(dist.get_rank(), None, world)  # dist.shard_batch's strided share
        share_augmentation = getattr(augmentation, "share", None)
        if augmentation is not None and share_augmentation is None:
            inputs = augmentation(inputs)  # a transform that cannot do part of a batch
        inputs, labels = inputs[positions], labels[positions]
        if share_augmentation is not None:
            inputs = share_augmentation(inputs, count, positions)
        counted = labels != self.ignore_index
        seen = int(counted.sum())
        self.optimizer.zero_grad()
        loss: cp.Tensor | None = None
        local_sum, correct = 0.0, 0
        if len(labels):
            logits = self.ddp(_to_tensor(self.normalize(inputs), self.dtype))
            # A share with no labelled pixel still runs backward (SyncBatchNorm's exchange
            # needs every process): with a sum, its loss is an exact 0 rather than 0/0.
            reduction = "mean" if seen else "sum"
            loss = F.cross_entropy(
                logits, cp.from_numpy(labels), ignore_index=self.ignore_index, reduction=reduction
            )
            local_sum = float(loss.item()) * seen
            correct = int(((np.argmax(logits.numpy(), axis=1) == labels) & counted).sum())
        else:
            # An empty share (the last batch has fewer samples than there are processes): no
            # forward, but the buffer broadcast that the forward would have joined.
            self.ddp.synchronize_buffers()
        share = {"loss_sum": local_sum, "correct": correct, "count": seen}
        figures = dist.all_reduce_metrics(share)
        value = figures["loss_sum"] / figures["count"] if figures["count"] else math.nan
        if not math.isfinite(value):
            # Every process sees the same figures: all stop here, process 0 says why.
            error = TrainingError(self._non_finite(value, epoch, batch_index))
            parallel.raise_together(error, status=1)
        if loss is not None:
            weight = seen * world / batch_seen
            (loss * weight if weight != 1 else loss).backward()
        self.ddp.synchronize_gradients()
        self.optimizer.step()
        if self.config.scheduler in PER_BATCH_SCHEDULERS:
            self.scheduler.step()
        return figures["loss_sum"], figures["correct"], figures["count"]

    def step_epoch_scheduler(self, test_loss: float) -> None:
        scheduler = self.scheduler
        if scheduler is None or self.config.scheduler in PER_BATCH_SCHEDULERS:
            return
        if isinstance(scheduler, optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(test_loss)
        else:
            scheduler.step()

    def _non_finite(self, value: float, epoch: int, batch: int) -> str:
        kept = (
            f"The last good checkpoint (epoch {self.history[-1].epoch}) is kept in {self.run_dir}"
            if self.history
            else "No epoch had completed, so there is no checkpoint"
        )
        return f"loss became {value} at epoch {epoch}, batch {batch}; try a smaller --lr. {kept}"


def _check_same_data(fingerprints: list[str], source: str) -> None:
    """Every process must train on the data process 0 trains on."""
    mine = fingerprints[dist.get_rank()]
    if mine != fingerprints[0]:
        raise DataError(
            f"{source}: the data this process loaded differs from process 0's (fingerprint "
            f"{mine[:19]}... against {fingerprints[0][:19]}...); every process must see the "
            "same files"
        )


def _to_tensor(batch: np.ndarray, dtype: np.dtype) -> cp.Tensor:
    return cp.from_numpy(np.ascontiguousarray(batch, dtype=dtype))


def augmentation_for(
    data: PreparedData, names: Sequence[str], generator: np.random.Generator
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The image augmentation; images a TDNN reads as sequences are augmented as images.
    Genuine 1-D sequences have no spatial augmentation, so none is applied to them."""
    augmentation = build_augmentation(names, generator)
    if augmentation is None or data.image_shape is None:
        return None
    if not data.as_sequence:
        return augmentation
    return _AsImages(augmentation, data.image_shape)


class _AsImages:
    """An image augmentation of sequences that are images read column by column."""

    def __init__(self, augmentation: Compose, shape: tuple[int, ...]) -> None:
        self.augmentation, self.shape = augmentation, shape

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.augmentation(batch.reshape(len(batch), *self.shape)).reshape(batch.shape)

    def share(self, sequences: np.ndarray, count: int, positions: slice) -> np.ndarray:
        images = sequences.reshape(len(sequences), *self.shape)
        return self.augmentation.share(images, count, positions).reshape(sequences.shape)


def _progress_bar(enabled: bool, total: int, description: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit="batch",
        leave=False,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def write_plots(
    run_dir: Path,
    model: nn.Module,
    data: PreparedData,
    history: list[EpochMetrics],
    predictions: np.ndarray,
    normalize: Normalize,
    ignore_index: int = -100,
) -> None:
    from convprop import plots

    dtype = next(iter(model.parameters())).dtype
    plots.save_curves(run_dir / "curves.png", history)
    plots.save_confusion(
        run_dir / "confusion.png",
        confusion_matrix(data.test.labels, predictions, len(data.classes), ignore_index),
        data.classes,
        "pixels" if predictions.ndim == 3 else "samples",
    )
    if predictions.ndim == 3:  # a segmenter's masks
        plots.save_segmentation(
            run_dir / "segmentation.png",
            data.test.inputs[:4],
            data.test.labels[:4],
            predictions[:4],
            data.classes,
        )
    plots.save_filters(run_dir / "filters.png", model)
    plots.save_feature_maps(
        run_dir / "feature_maps.png", model, normalize(data.test.inputs[:1]).astype(dtype)
    )
