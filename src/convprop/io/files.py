"""Saving and loading without pickle: safetensors for arrays, JSON for everything else.

Every write is atomic: the bytes go to a temporary file in the same directory, are flushed to
disk, and the temporary file is renamed over the target. A crash at any moment leaves either the
old file or the new one, never a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used, with the file and the reason."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (where the platform allows opening directories)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save_json(path: str | Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def load_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable JSON file ({error})") from None


def save_arrays(
    path: str | Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Write named arrays as a safetensors file (atomically)."""
    contiguous = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    atomic_write_bytes(path, safetensors.numpy.save(contiguous, dict(metadata or {}) or None))


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read a safetensors file into ndarrays; a damaged file raises CheckpointError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error})") from None
    try:
        return dict(safetensors.numpy.load(data))
    except Exception as error:  # safetensors raises its own error types for damaged headers
        raise CheckpointError(f"{path}: not a valid safetensors file ({error})") from None


def save_state_dict(path: str | Path, state: Mapping[str, np.ndarray]) -> None:
    """A model's ``state_dict`` as safetensors, keys as PyTorch's, so PyTorch reads it with
    safetensors' own ``load_file`` (its torch flavour) and ``Module.load_state_dict``."""
    save_arrays(path, state, {"format": "pt", "producer": "convprop"})
