"""Files: safetensors written here and read by safetensors and PyTorch, atomic writes, faults."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from torch import nn as tnn

import convprop as cp
from convprop.io.files import (
    CheckpointError,
    FileWriteError,
    atomic_write_bytes,
    load_arrays,
    safetensors_bytes,
    save_arrays,
    save_state_dict,
)
from convprop.training import load_weights
from tests.models.test_zoo import ZOO_CASES, ZOO_IDS

ARRAYS = {
    "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
    "bn.num_batches_tracked": np.array(7, dtype=np.int64),
    "bn.running_var": np.linspace(0, 1, 3),
    "mask": np.array([True, False, True]),
    "strided": np.arange(12.0).reshape(3, 4)[:, ::2],
    "big_endian": np.arange(3, dtype=">f4"),
    "bytes": np.arange(5, dtype=np.uint8),
}


def test_arrays_come_back_with_their_shapes_dtypes_and_values(tmp_path: Path) -> None:
    save_arrays(tmp_path / "a.safetensors", ARRAYS)
    for loaded in (
        load_arrays(tmp_path / "a.safetensors"),
        safetensors.numpy.load_file(tmp_path / "a.safetensors"),
    ):
        assert sorted(loaded) == sorted(ARRAYS)
        for name, value in ARRAYS.items():
            assert loaded[name].shape == value.shape, name
            assert loaded[name].dtype == value.dtype.newbyteorder("="), name
            np.testing.assert_array_equal(loaded[name], value, err_msg=name)


def test_pytorch_reads_the_files_with_0d_counters_as_0d(tmp_path: Path) -> None:
    save_state_dict(tmp_path / "s.safetensors", ARRAYS)
    loaded = safetensors.torch.load_file(tmp_path / "s.safetensors")
    assert (
        loaded["bn.num_batches_tracked"].shape == () and int(loaded["bn.num_batches_tracked"]) == 7
    )
    assert loaded["conv.weight"].dtype == torch.float32
    assert loaded["mask"].dtype == torch.bool


def test_same_arrays_give_same_bytes_whatever_the_order_of_keys_and_metadata() -> None:
    reordered = dict(reversed(list(ARRAYS.items())))
    first = safetensors_bytes(ARRAYS, {"producer": "convprop", "format": "pt"})
    assert first == safetensors_bytes(reordered, {"format": "pt", "producer": "convprop"})
    # safetensors' own writer gives the same tensor layout (its order: element size, name).
    theirs = safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in ARRAYS.items()})
    assert safetensors.numpy.load(theirs).keys() == safetensors.numpy.load(first).keys()


def test_header_is_padded_to_eight_bytes_and_arrays_are_aligned() -> None:
    data = safetensors_bytes(ARRAYS)
    size = int.from_bytes(data[:8], "little")
    assert size % 8 == 0
    import json

    header = json.loads(data[8 : 8 + size])
    for name, entry in header.items():
        begin = entry["data_offsets"][0]
        assert begin % np.dtype(ARRAYS[name].dtype).itemsize == 0, name


def test_unstorable_dtypes_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match="'z' has dtype complex128"):
        safetensors_bytes({"z": np.zeros(2, np.complex128)})


@pytest.mark.parametrize(("build", "build_torch", "shape"), ZOO_CASES, ids=ZOO_IDS)
def test_every_zoo_model_round_trips_through_files_both_ways(
    tmp_path: Path,
    build: Callable[[], Any],
    build_torch: Callable[[], tnn.Module],
    shape: tuple[int, ...],
) -> None:
    cp.manual_seed(0)
    ours = build()
    ours(cp.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32)))
    state = ours.state_dict()
    save_state_dict(tmp_path / "ours.safetensors", state)
    cp.manual_seed(1)
    again = build()
    load_weights(again, tmp_path / "ours.safetensors")
    for key, value in state.items():
        returned = again.state_dict()[key]
        assert returned.shape == value.shape and returned.dtype == value.dtype, key
        assert returned.tobytes() == value.tobytes(), key
    # PyTorch loads our file strictly; and a file PyTorch wrote loads into ours.
    theirs = build_torch()
    theirs.load_state_dict(safetensors.torch.load_file(tmp_path / "ours.safetensors"))
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.mul_(-1.5)
    safetensors.torch.save_file(theirs.state_dict(), tmp_path / "theirs.safetensors")
    load_weights(again, tmp_path / "theirs.safetensors")
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[key], value.numpy(), err_msg=key)
        assert again.state_dict()[key].shape == tuple(value.shape), key


def test_files_get_the_mode_the_umask_gives(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b", b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("failing", "code"),
    [("write", errno.ENOSPC), ("replace", errno.EROFS), ("fsync", errno.EIO)],
)
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, code: int
) -> None:
    target = tmp_path / "model.safetensors"
    atomic_write_bytes(target, b"old")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    if failing == "write":
        monkeypatch.setattr(os, "fdopen", _fdopen_failing_on_write(code))
    else:
        monkeypatch.setattr(os, failing, fail)
    with pytest.raises(FileWriteError) as raised:
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert str(raised.value) == f"{target}: cannot write ({os.strerror(code)})"
    assert raised.value.errno == code
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def _fdopen_failing_on_write(code: int) -> Callable[..., Any]:
    real = os.fdopen

    class Full:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(code, os.strerror(code))

    return lambda fd, *args, **kwargs: Full(real(fd, *args, **kwargs))


def test_damaged_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="bad.safetensors: not a valid safetensors file"):
        load_arrays(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="missing.safetensors: no such file"):
        load_arrays(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_arrays(tmp_path)


def test_staged_writes_change_all_files_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convprop.io.files import StagedWrites

    names = ["a.bin", "b.bin", "c.json"]
    for name in names[:2]:
        (tmp_path / name).write_bytes(b"old " + name.encode())
    real_replace = os.replace

    def replace_failing_on_the_last(source: object, target: object) -> None:
        if str(target).endswith("c.json"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_failing_on_the_last)
    with pytest.raises(FileWriteError, match=r"c.json: cannot write \(Input/output error\)"):
        with StagedWrites() as files:
            for name in names:
                files.write(tmp_path / name, b"new " + name.encode())
    monkeypatch.undo()
    # a.bin and b.bin had been replaced: they have their old bytes back; c.json never existed.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]
    for name in names[:2]:
        assert (tmp_path / name).read_bytes() == b"old " + name.encode()
    with StagedWrites() as files:
        for name in names:
            files.write(tmp_path / name, b"new " + name.encode())
    assert [(tmp_path / n).read_bytes() for n in names] == [b"new " + n.encode() for n in names]


def test_leaving_staged_writes_by_an_exception_writes_nothing(tmp_path: Path) -> None:
    from convprop.io.files import StagedWrites

    with pytest.raises(KeyboardInterrupt):
        with StagedWrites() as files:
            files.write(tmp_path / "a", b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
