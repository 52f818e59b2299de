"""Run directories: exclusive names, one process at a time, an overwritten run kept until the
new one commits."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from convprop.training import rundir
from convprop.training.rundir import RunDirectoryError


def test_new_run_directories_are_distinct_even_when_made_at_once(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: rundir.new_run_dir(tmp_path / "runs"), range(16)))
    assert len(set(made)) == 16 and all(path.is_dir() for path in made)
    stamps = {path.name[:15] for path in made}
    assert all(len(stamp) == 15 and stamp[8] == "-" for stamp in stamps)


def test_two_trainings_started_together_keep_both_runs(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "convprop", "train", "--epochs", "1", "--limit", "20"]
    command += ["--batch-size", "10", "--quiet", "--augment", "none"]
    processes = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((run / "checkpoint.json").exists() for run in runs)


def test_a_run_directory_is_held_by_one_process(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with rundir.locked(run):
        child = subprocess.run(
            [sys.executable, "-m", "convprop", "train", "--out", str(run), "--quiet"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert child.returncode == 2
    assert "another convprop process is training in this run directory" in child.stderr
    with rundir.locked(run):  # released: this process may take it again
        pass


def _fake_run(folder: Path, marker: str) -> None:
    (folder / "state").mkdir(parents=True)
    for name in ("checkpoint.json", "model.safetensors", "state/epoch-0001.model.safetensors"):
        (folder / name).write_text(marker)


def test_set_aside_and_put_back_restore_the_old_run(tmp_path: Path) -> None:
    _fake_run(tmp_path, "old")
    (tmp_path / "notes.txt").write_text("mine")
    folder = rundir.set_aside(tmp_path)
    assert folder is not None and rundir.existing_run_files(tmp_path) == []
    (tmp_path / "model.safetensors").write_text("new, half written")
    rundir.put_back(tmp_path, folder)
    assert (tmp_path / "model.safetensors").read_text() == "old"
    assert (tmp_path / "state" / "epoch-0001.model.safetensors").read_text() == "old"
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not folder.exists()


def test_recover_after_a_kill_depends_on_whether_the_new_run_committed(tmp_path: Path) -> None:
    killed_early, killed_late = tmp_path / "early", tmp_path / "late"
    for run in (killed_early, killed_late):
        _fake_run(run, "old")
        rundir.set_aside(run)
    (killed_late / "checkpoint.json").write_text("new")  # its first epoch was committed
    for run in (killed_early, killed_late):
        rundir.recover(run)
        assert not list(run.glob(rundir.SET_ASIDE_PREFIX + "*"))
    assert (killed_early / "checkpoint.json").read_text() == "old"
    assert (killed_late / "checkpoint.json").read_text() == "new"
    assert not (killed_late / "model.safetensors").exists()


def test_checks_name_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirectoryError, match="exists and is not a directory"):
        rundir.check_new_run(tmp_path / "file", overwrite=False)
    unfinished = tmp_path / "unfinished"
    (unfinished / "state").mkdir(parents=True)
    with pytest.raises(RunDirectoryError, match="never completed an epoch .* --overwrite"):
        rundir.check_new_run(unfinished, overwrite=False)
    with pytest.raises(RunDirectoryError, match="never completed an epoch.* --overwrite"):
        rundir.check_resumable(unfinished)
    rundir.check_new_run(unfinished, overwrite=True)
    rundir.check_new_run(tmp_path / "absent", overwrite=False)
    assert os.listdir(unfinished) == ["state"]
