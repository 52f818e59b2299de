"""The process group in one ordinary process: a world of one, and the one-line errors that
say what is missing (no MPI is started: these run in the test process itself)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from convprop import distributed as dist


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in dist.process_group.LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_a_world_of_one_without_a_group() -> None:
    assert not dist.is_initialized()
    assert dist.get_rank() == 0 and dist.get_world_size() == 1
    with pytest.raises(dist.DistributedError, match="call convprop.distributed.init_process_group"):
        dist.all_reduce(np.zeros(3))
    with pytest.raises(dist.DistributedError, match="not initialized"):
        dist.barrier()


def test_without_a_launcher_init_says_how_to_launch(no_launcher: None) -> None:
    assert not dist.launched_by_mpi()
    with pytest.raises(dist.DistributedError, match=r"needs an MPI launcher: .*mpirun -n N") as e:
        dist.init_process_group()
    assert "\n" not in str(e.value)
    assert not dist.is_initialized()


def test_without_mpi4py_init_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py -> ImportError
    with pytest.raises(dist.DistributedError) as error:
        dist.init_process_group()
    assert str(error.value) == (
        "distributed training needs mpi4py and an MPI library: pip install 'convprop[mpi]'"
    )


def test_init_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="backend must be 'mpi', got 'gloo'"):
        dist.init_process_group("gloo")


def test_error_line_without_a_group_has_no_rank() -> None:
    assert dist.error_line("bad\n  value") == "convprop: error: bad value"


def test_abort_on_error_without_a_group_lets_errors_through() -> None:
    with pytest.raises(KeyError), dist.abort_on_error():
        raise KeyError("not in a job")


def test_is_available_does_not_start_mpi() -> None:
    dist.is_available()
    assert "mpi4py.MPI" not in sys.modules
