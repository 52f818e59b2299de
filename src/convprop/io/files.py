"""Saving and loading without pickle: safetensors for arrays, JSON for everything else.

Every write is atomic: the bytes go to a temporary file in the same directory, are flushed to
disk, and the temporary file is renamed over the target. A crash at any moment leaves either the
old file or the new one, never a half-written file, and a failed write (a full disk, a read-only
file system) removes its temporary file and raises :class:`FileWriteError` naming the target
and the cause. New files get the mode the process's umask gives (``0o666 & ~umask``), as any
file the user's tools create.

Every file is written byte-for-byte reproducibly: the same arrays and metadata give the same
bytes. (safetensors' own writer orders its metadata keys differently on every call, so the
safetensors layout is written here: an 8-byte little-endian header size, a JSON header padded
with spaces to a multiple of 8 bytes, then the arrays' bytes, largest element size first and
then by name, as safetensors itself orders them so that every array is aligned.)
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used, with the file and the reason."""


class FileWriteError(OSError):
    """A file that could not be written (disk full, read-only file system, no permission),
    with the path and the cause; nothing of the file's previous version was lost.

    ``str(error)`` is the whole one-line message; ``errno`` is the cause's error number."""

    def __init__(self, path: str | Path, cause: OSError) -> None:
        super().__init__(f"{path}: cannot write ({describe_cause(cause)})")
        self.errno = cause.errno


_temporary_names = itertools.count()


def describe_cause(error: OSError) -> str:
    """The cause of an OS error in words, without the path (``No space left on device``)."""
    if isinstance(error, FileWriteError):
        return str(error)
    return error.strerror or (os.strerror(error.errno) if error.errno else str(error))


def describe_os_error(error: OSError) -> str:
    """One line for an OS error: the path it concerns (where known) and the cause in words."""
    if isinstance(error, FileWriteError) or error.filename is None:
        return describe_cause(error)
    return f"{os.fsdecode(error.filename)}: {describe_cause(error)}"


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside ``path``, opened for writing; created with mode 0o666 so the kernel
    applies the umask (``tempfile.mkstemp`` would make it 0o600 whatever the umask)."""
    for _ in range(1000):
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{next(_temporary_names)}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path))


class StagedWrites:
    """Files written as one: each goes to a temporary file beside its target and is flushed
    to disk; only when every one is written do they replace their targets, in the order they
    were written. A failure while writing (a full disk) removes every temporary file and leaves
    every target as it was; leaving the ``with`` block by an exception does the same.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with StagedWrites() as files:
    ...     files.write(folder / "weights.bin", b"...")
    ...     files.write(folder / "index.json", b"{}")  # the commit point goes last
    >>> sorted(p.name for p in folder.iterdir())
    ['index.json', 'weights.bin']
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def write(self, path: str | Path, data: bytes) -> None:
        path = Path(path)
        temporary: Path | None = None
        try:
            handle, temporary = _create_temporary(path)
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            self.discard()
            raise FileWriteError(path, error) from None
        self._staged.append((temporary, path))

    def discard(self) -> None:
        for temporary, _ in self._staged:
            temporary.unlink(missing_ok=True)
        self._staged = []

    def publish(self) -> None:
        """Rename every temporary file over its target. Should a rename fail (the file system
        turned read-only), the targets already replaced get their old versions back (kept as
        hard links until the end), so the files still change all together or not at all."""
        staged, self._staged = self._staged, []
        replaced: list[tuple[Path, Path | None]] = []  # (target, hard link to its old version)
        try:
            for temporary, path in staged:
                old = _keep_old_version(path)
                try:
                    os.replace(temporary, path)
                except OSError as error:
                    if old is not None:
                        old.unlink(missing_ok=True)
                    raise FileWriteError(path, error) from None
                replaced.append((path, old))
        except BaseException:
            for temporary, _ in staged:
                temporary.unlink(missing_ok=True)
            for path, old in reversed(replaced):
                with contextlib.suppress(OSError):
                    if old is not None:
                        os.replace(old, path)
                    else:
                        path.unlink(missing_ok=True)
            raise
        for _, old in replaced:
            if old is not None:
                old.unlink(missing_ok=True)
        for directory in {path.parent for _, path in staged}:
            _fsync_directory(directory)

    def __enter__(self) -> StagedWrites:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.publish()
        else:
            self.discard()


def _keep_old_version(path: Path) -> Path | None:
    """A hard link to ``path``'s current file (None if there is none, or the file system has
    no hard links: then a failed publish cannot restore it)."""
    old = path.with_name(f".{path.name}.{os.getpid()}.{next(_temporary_names)}.old")
    try:
        os.link(path, old)
    except OSError:  # no such file yet, or no hard links here
        return None
    return old


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    with StagedWrites() as files:
        files.write(path, data)


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


def json_bytes(value: Any) -> bytes:
    """``value`` as indented JSON, keys in the order given."""
    return (json.dumps(value, indent=2, sort_keys=False, allow_nan=True) + "\n").encode()


def save_json(path: str | Path, value: Any) -> None:
    """``value`` as indented JSON (keys in the order given), atomically."""
    atomic_write_bytes(path, json_bytes(value))


def load_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a JSON file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable JSON file ({error})") from None


# safetensors' names of the element types a state_dict may hold.
_SAFETENSORS_DTYPES = {
    np.dtype(np.float64): "F64",
    np.dtype(np.float32): "F32",
    np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64",
    np.dtype(np.int32): "I32",
    np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint64): "U64",
    np.dtype(np.uint32): "U32",
    np.dtype(np.uint16): "U16",
    np.dtype(np.uint8): "U8",
    np.dtype(np.bool_): "BOOL",
}


def safetensors_bytes(
    arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> bytes:
    """The safetensors encoding of named arrays: the same inputs always give the same bytes.

    A 0-d array stays 0-d (shape ``[]``), as PyTorch's ``num_batches_tracked``.
    """
    values: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        little_endian = array.dtype.newbyteorder("<")
        if little_endian not in _SAFETENSORS_DTYPES:
            raise TypeError(f"save_arrays: {name!r} has dtype {array.dtype}, not storable")
        values[name] = np.require(array.astype(little_endian, copy=False), requirements="C")
    order = sorted(values, key=lambda name: (-values[name].dtype.itemsize, name))
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(metadata[k]) for k in sorted(metadata)}
    offset = 0
    for name in order:
        size = values[name].nbytes
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[values[name].dtype],
            "shape": list(values[name].shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return b"".join(
        [struct.pack("<Q", len(encoded)), encoded, *(values[name].tobytes() for name in order)]
    )


def save_arrays(
    path: str | Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Write named arrays as a safetensors file (atomically, reproducibly)."""
    atomic_write_bytes(path, safetensors_bytes(arrays, metadata))


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read a safetensors file into ndarrays; a damaged file raises CheckpointError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a safetensors file") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({describe_cause(error)})") from None
    try:
        return dict(safetensors.numpy.load(data))
    except Exception as error:  # safetensors raises its own error types for damaged headers
        raise CheckpointError(f"{path}: not a valid safetensors file ({error})") from None


def state_dict_bytes(state: Mapping[str, np.ndarray]) -> bytes:
    """A model's ``state_dict`` as safetensors, keys as PyTorch's, so PyTorch reads it with
    safetensors' own ``load_file`` (its torch flavour) and ``Module.load_state_dict``."""
    return safetensors_bytes(state, {"format": "pt", "producer": "convprop"})


def save_state_dict(path: str | Path, state: Mapping[str, np.ndarray]) -> None:
    """Write :func:`state_dict_bytes` of ``state`` to ``path`` (atomically)."""
    atomic_write_bytes(path, state_dict_bytes(state))
