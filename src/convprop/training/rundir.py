"""The run directory: created exclusively, held by one process at a time, replaced safely.

* A new default directory (``runs/<date>-<time>``) is created with ``mkdir``, which fails if
  the name is taken, so two runs started in the same second get ``...-HHMMSS`` and
  ``...-HHMMSS-2`` instead of writing into one directory.
* While a run trains, its directory is locked (``flock`` on the directory itself, so no lock
  file is left behind); a second process training into it is refused.
* ``--overwrite`` first moves the old run's files aside, into a hidden ``.replaced-*``
  folder, and deletes them only when the new run has committed its first epoch. A new run that
  fails before that (bad data, a full disk, Ctrl-C) puts them back, and a run killed before
  that is put back by the next command that trains into the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

RUN_FILES = (
    "checkpoint.json",
    "model.safetensors",
    "best.safetensors",
    "metrics.csv",
    "curves.png",
    "filters.png",
    "confusion.png",
    "feature_maps.png",
    "state",
    "source.onnx",  # the ONNX file a fine-tuned run started from (``--model PATH.onnx``)
)
SOURCE_ONNX = "source.onnx"
SET_ASIDE_PREFIX = ".replaced-"


class RunDirectoryError(ValueError):
    """A run directory that cannot be used as asked (exists, missing, incompatible)."""


def new_run_dir(parent: str | Path = "runs") -> Path:
    """Create and return a run directory named by the time that did not exist before."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in range(1, 10_000):
        candidate = parent / (stamp if suffix == 1 else f"{stamp}-{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RunDirectoryError(f"{parent}: no free run directory name for {stamp}")


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for this process; another process holding it is an error."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock, as before
        yield
        return
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(
                f"{run_dir}: another convprop process is training in this run directory"
            ) from None
        yield
    finally:
        os.close(descriptor)


def existing_run_files(run_dir: Path) -> list[str]:
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def check_new_run(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start a new run in a directory that holds one, unless ``overwrite``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir}: exists and is not a directory")
    existing = existing_run_files(run_dir) if run_dir.is_dir() else []
    if not existing or overwrite:
        return
    if "checkpoint.json" not in existing:
        raise RunDirectoryError(
            f"{run_dir}: holds an unfinished run that never completed an epoch "
            f"({', '.join(existing[:3])}); pass --overwrite to start it again"
        )
    raise RunDirectoryError(
        f"{run_dir}: already holds a run ({', '.join(existing[:3])}); pass --resume to "
        "continue it or --overwrite to replace it"
    )


def check_resumable(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir}: no such run directory")
    if not (run_dir / "checkpoint.json").exists():
        if existing_run_files(run_dir) or _set_aside_folders(run_dir):
            raise RunDirectoryError(
                f"{run_dir}: holds an unfinished run that never completed an epoch, so there "
                "is nothing to resume; pass --overwrite (without --resume) to start it again"
            )
        raise RunDirectoryError(f"{run_dir}: no checkpoint.json to resume from")


def _set_aside_folders(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob(SET_ASIDE_PREFIX + "*") if p.is_dir())


def recover(run_dir: Path) -> None:
    """Finish what an overwriting run killed mid-way left: if it never committed an epoch,
    the old run comes back; if it did, the old run's files go."""
    for folder in _set_aside_folders(run_dir):
        if (run_dir / "checkpoint.json").exists():
            shutil.rmtree(folder, ignore_errors=True)
        else:
            put_back(run_dir, folder)


def set_aside(run_dir: Path) -> Path | None:
    """Move the run files of ``run_dir`` into a hidden folder; None if there were none."""
    existing = existing_run_files(run_dir)
    if not existing:
        return None
    folder = run_dir / f"{SET_ASIDE_PREFIX}{os.getpid()}"
    folder.mkdir()
    for name in existing:
        os.replace(run_dir / name, folder / name)
    return folder


def put_back(run_dir: Path, folder: Path) -> None:
    """Undo :func:`set_aside`: the new run's files go, the old ones return."""
    for name in existing_run_files(run_dir):
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    for child in folder.iterdir():
        os.replace(child, run_dir / child.name)
    folder.rmdir()
