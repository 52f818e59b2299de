"""The fault matrix: every bad input and OS fault, through the real command line in a subprocess.

Each case asserts what a user must see: exit status 2, one line on stderr naming the problem,
no traceback, and every file a run had before the command byte for byte as it was (hashes),
with no temporary file left behind. OS faults are injected into the child process by wrapping
one ``os`` function (``os.open`` creating a temporary file, ``os.replace`` publishing one) so
that it fails with a real errno for one file name; the real thing (a full and a read-only
file system, a tmpfs mounted in a private mount namespace) is tested too where the machine
lets an unprivileged ``unshare`` mount one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import missing

QUICK = ["--limit", "40", "--batch-size", "20", "--quiet", "--seed", "2", "--augment", "none"]

# Runs the CLI with one os function failing: CONVPROP_FAULT="open:ENOSPC:checkpoint.json."
# makes the first os.open of a path containing "checkpoint.json." fail with ENOSPC.
FAULTY_CLI = textwrap.dedent(
    """
    import errno, os, sys
    name, code, match = os.environ["CONVPROP_FAULT"].split(":", 2)
    real = getattr(os, name)
    def faulty(*args, **kwargs):
        if match in os.fsdecode(args[-1] if name == "replace" else args[0]):
            number = getattr(errno, code)
            raise OSError(number, os.strerror(number))
        return real(*args, **kwargs)
    setattr(os, name, faulty)
    from convprop.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def convprop(
    *args: str, fault: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "convprop", *args]
    env = dict(os.environ)
    if fault is not None:
        command = [sys.executable, "-c", FAULTY_CLI, *args]
        env["CONVPROP_FAULT"] = fault
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) by relative path, with its SHA-256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("convprop: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch LeNet-5 run (cosine schedule, so it can be resumed further)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = convprop("train", "--epochs", "1", "--scheduler", "cosine", *QUICK, "--out", str(run))
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


# ----------------------------------------------------------------------------- OS faults
@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("open:ENOSPC:epoch-0002.model.safetensors.", "No space left on device"),
        ("open:ENOSPC:checkpoint.json.", "No space left on device"),
        ("open:EROFS:metrics.csv.", "Read-only file system"),
        ("replace:EIO:checkpoint.json", "Input/output error"),
        ("replace:EROFS:model.safetensors", "Read-only file system"),
    ],
)
def test_a_failed_epoch_commit_leaves_the_run_as_it_was(run: Path, fault: str, cause: str) -> None:
    before = snapshot(run)
    result = convprop("train", "--resume", str(run), "--epochs", "2", "--quiet", fault=fault)
    assert_one_line_error(result, f"cannot write ({cause})", str(run))
    assert snapshot(run) == before
    assert convprop("evaluate", str(run)).returncode == 0


def test_a_failed_plot_keeps_the_committed_epoch(run: Path) -> None:
    result = convprop(
        "train", "--resume", str(run), "--epochs", "2", "--quiet", fault="open:ENOSPC:curves.png."
    )
    assert_one_line_error(result, "curves.png: cannot write (No space left on device)")
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == 2
    assert not [p for p in run.rglob("*") if p.name.endswith((".tmp", ".old"))]
    assert convprop("evaluate", str(run)).returncode == 0


def test_a_new_run_that_fails_before_its_first_epoch_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new"
    result = convprop(
        "train", "--epochs", "1", *QUICK, "--out", str(out), fault="open:ENOSPC:checkpoint.json."
    )
    assert_one_line_error(result, "No space left on device")
    assert not out.exists()


def test_a_failed_overwrite_keeps_the_old_run(run: Path) -> None:
    before = snapshot(run)
    result = convprop(
        "train",
        "--epochs",
        "1",
        *QUICK,
        "--out",
        str(run),
        "--overwrite",
        fault="open:ENOSPC:epoch-0001.optimizer.safetensors.",
    )
    assert_one_line_error(result, "No space left on device")
    assert snapshot(run) == before
    assert not list(run.glob(".replaced-*"))


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_out_naming_a_file(tmp_path: Path, where: str) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    out = existing if where == "file" else existing / "run"
    result = convprop("train", "--epochs", "1", *QUICK, "--out", str(out))
    assert_one_line_error(result, str(existing))
    assert existing.read_text() == "mine"


def _on_a_tmpfs(size: str, fault: str, commands: str, tmp_path: Path) -> Path:
    """In a private user and mount namespace: mount a tmpfs of ``size``, train one epoch on
    it, hash the run's files into ``report/before``, run ``fault`` (a shell command that breaks
    the disk) and then ``commands`` (``$CONVPROP`` runs the CLI, ``$RUN`` is the run, ``$DISK``
    the tmpfs, ``$REPORT`` a folder outside it), and hash the files again into
    ``report/after``. Returns the report folder."""
    if shutil.which("unshare") is None:
        missing("needs util-linux's unshare to mount a private tmpfs")
    disk, report = tmp_path / "disk", tmp_path / "report"
    disk.mkdir()
    report.mkdir()
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {disk}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        missing(f"this machine lets no unshare mount a tmpfs: {probe.stderr.decode().strip()}")
    hashes = "(cd $RUN && find . -type f | sort | xargs sha256sum)"
    script = f"""
        set -u
        DISK={disk}; RUN={disk}/run; REPORT={report}; CONVPROP="{sys.executable} -m convprop"
        mount -t tmpfs -o size={size} tmpfs $DISK || exit 90
        $CONVPROP train --epochs 1 --scheduler cosine {" ".join(QUICK)} --out $RUN \
            > /dev/null || exit 91
        {hashes} > $REPORT/before
        {fault}
        {commands}
        {hashes} > $REPORT/after
    """
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return report


def _assert_reported(stderr: str, cause: str) -> None:
    assert stderr.startswith("convprop: error: ") and stderr.count("\n") == 1, stderr
    assert cause in stderr and "Traceback" not in stderr


def test_a_real_full_disk(tmp_path: Path) -> None:
    """A 3 MB tmpfs: epoch 1 fits, then a file fills the disk and epoch 2 cannot be written."""
    report = _on_a_tmpfs(
        "3m",
        "dd if=/dev/zero of=$DISK/filler bs=4k 2> /dev/null",
        "$CONVPROP train --resume $RUN --epochs 2 --quiet 2> $REPORT/resume\n"
        "echo $? > $REPORT/status",
        tmp_path,
    )
    assert (report / "status").read_text().split() == ["2"]
    _assert_reported((report / "resume").read_text(), "No space left on device")
    assert (report / "after").read_text() == (report / "before").read_text()


def test_a_real_read_only_file_system(tmp_path: Path) -> None:
    report = _on_a_tmpfs(
        "8m",
        "mount -o remount,ro $DISK || exit 92",
        """
        $CONVPROP train --resume $RUN --epochs 2 --quiet 2> $REPORT/resume
        echo $? >> $REPORT/status
        $CONVPROP train --epochs 1 --quiet --out $DISK/new 2> $REPORT/new
        echo $? >> $REPORT/status
        $CONVPROP evaluate $RUN > /dev/null 2> $REPORT/evaluate
        echo $? >> $REPORT/status
        """,
        tmp_path,
    )
    assert (report / "status").read_text().split() == ["2", "2", "0"]
    for name in ("resume", "new"):
        _assert_reported((report / name).read_text(), "Read-only file system")
    assert (report / "after").read_text() == (report / "before").read_text()


# ----------------------------------------------------------------------------- bad data
def _npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


def _images(count: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (count, 16, 16), dtype=np.uint8)


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (
            lambda d: _npz(
                d / "nan.npz",
                images=np.where(np.eye(8)[None] > 0, np.nan, 0.5) * np.ones((40, 1, 1)),
                labels=np.arange(40) % 2,
            ),
            ["nan.npz: images hold 320 NaN or infinite values", "first at index 0"],
        ),
        (
            lambda d: _npz(
                d / "inf.npz",
                images=np.concatenate([np.zeros((39, 8, 8)), np.full((1, 8, 8), np.inf)]),
                labels=np.arange(40) % 2,
            ),
            ["inf.npz: images hold 64 NaN or infinite values", "first at index 39"],
        ),
        (
            lambda d: _npz(d / "empty.npz", images=np.zeros((0, 8, 8)), labels=np.zeros(0, int)),
            ["empty.npz: holds no samples"],
        ),
        (
            lambda d: (d / "text.npz").write_text("not an archive") and str(d / "text.npz"),
            ["text.npz: not a .npz file (not a zip archive"],
        ),
        (
            lambda d: (
                np.save(d / "single.npy", np.zeros(3))
                or os.replace(d / "single.npy", d / "single.npz")
                or str(d / "single.npz")
            ),
            ["single.npz: not a .npz file (a single .npy array"],
        ),
        (
            lambda d: _npz(
                d / "gap.npz", images=_images(), labels=np.where(np.arange(40) < 20, 0, 99)
            ),
            [
                "gap.npz: labels must be 0..K-1 for the K = 2 classes found, got 0, 99",
                "--num-classes",
            ],
        ),
        (
            lambda d: _npz(d / "tiny.npz", images=_images(4), labels=np.array([0, 0, 1, 1])),
            ["tiny.npz: 4 samples are too few to split", "leaves 4 for training and 0 for testing"],
        ),
    ],
    ids=["nan", "inf", "empty", "text", "npy", "label_gap", "tiny"],
)
def test_bad_data(tmp_path: Path, make, fragments: list[str]) -> None:
    data = make(tmp_path)
    before = snapshot(tmp_path)
    result = convprop(
        "train", "--data", data, "--epochs", "1", "--quiet", "--out", str(tmp_path / "o")
    )
    assert_one_line_error(result, *fragments)
    assert snapshot(tmp_path) == before


def test_num_classes_admits_labels_that_do_not_all_occur(tmp_path: Path) -> None:
    data = _npz(tmp_path / "gap.npz", images=_images(), labels=np.where(np.arange(40) < 20, 0, 3))
    out = tmp_path / "run"
    result = convprop(
        "train", "--data", data, "--num-classes", "4", "--epochs", "1", "--quiet", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "checkpoint.json").read_text())["data"]["classes"] == list("0123")
    too_few = convprop(
        "train",
        "--data",
        data,
        "--num-classes",
        "3",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "x"),
    )
    assert_one_line_error(too_few, "label 3 is outside --num-classes 3")


# ----------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--lr", "inf"], ["--lr must be a positive finite number, got inf"]),
        (["--lr", "nan"], ["--lr must be a positive finite number, got nan"]),
        (["--momentum", "-1"], ["--momentum must be a non-negative finite number, got -1.0"]),
        (["--out", ""], ["--out: expected a path, got an empty string"]),
        (["--data", ""], ["--data must name a bundled data set or a path, got an empty string"]),
        (["--test-data", " "], ["--test-data must name a bundled data set or a path"]),
        (["--num-classes", "1"], ["--num-classes must be an integer >= 2, got 1"]),
        (["--resize", "28"], ["--resize must be two positive integers HEIGHT, WIDTH, got [28]"]),
    ],
)
def test_bad_flags(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    result = convprop("train", *args, "--quiet", cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ('lr = "fast"', ["run.toml: lr must be a positive finite number, got 'fast' (a string)"]),
        (
            "augment = 5",
            ["run.toml: augment must be a list of augmentation names", "5 (an integer)"],
        ),
        ("epochs = 1.5", ["run.toml: epochs must be a positive integer, got 1.5 (a number)"]),
        ("seed = true", ["run.toml: seed must be an integer >= 0, got True (a boolean)"]),
        ('model = ["lenet5"]', ["run.toml: model must be one of lenet5", "(a list)"]),
        ("colour = 3", ["run.toml: colour is not a setting (the settings are:"]),
        ("epochs = ", ["--config: run.toml is not a readable TOML file"]),
    ],
)
def test_bad_config_files(tmp_path: Path, toml: str, fragments: list[str]) -> None:
    (tmp_path / "run.toml").write_text(toml + "\n")
    result = convprop("train", "--config", "run.toml", "--quiet", cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


# ----------------------------------------------------------------------------- damaged runs
def _edit(run: Path, change) -> None:
    path = run / "checkpoint.json"
    checkpoint = json.loads(path.read_text())
    change(checkpoint)
    path.write_text(json.dumps(checkpoint))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda c: c.pop("rng"), "checkpoint.json: rng is missing"),
        (lambda c: c.pop("history"), "checkpoint.json: history is missing"),
        (lambda c: c.pop("optimizer"), "checkpoint.json: optimizer is missing"),
        (
            lambda c: c.update(epoch="two"),
            "checkpoint.json: epoch must be an integer >= 1, got 'two'",
        ),
        (lambda c: c.update(epoch=-3), "checkpoint.json: epoch must be an integer >= 1, got -3"),
        (
            lambda c: c.update(format=999),
            "checkpoint.json: format is 999 (written by a newer convprop)",
        ),
        (lambda c: c.update(format="1"), "checkpoint.json: format must be an integer, got '1'"),
        (
            lambda c: c["config"].update(lr="fast"),
            "checkpoint.json: config is not valid: lr must be",
        ),
        (
            lambda c: c["data"].update(classes=["only"]),
            "data.classes must be at least two class names",
        ),
        (
            lambda c: c.update(model_file="../../etc/passwd"),
            "model_file must name a file in the run's state/",
        ),
        (
            lambda c: c["rng"]["shuffle"].update(bit_generator="os"),
            "rng.shuffle.bit_generator must be one of",
        ),
        (
            lambda c: c["history"].append(c["history"][0]),
            "history must hold one row for each of epochs 1..1",
        ),
        (
            lambda c: c["data"].update(mean=[0.1, 0.2]),
            "data.mean must be a list of 1 finite numbers",
        ),
    ],
    ids=[
        "no_rng",
        "no_history",
        "no_optimizer",
        "epoch_text",
        "epoch_negative",
        "format_newer",
        "format_text",
        "config",
        "classes",
        "escape",
        "generator",
        "history_rows",
        "mean",
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "resume"])
def test_damaged_checkpoints(run: Path, change, fragment: str, command: str) -> None:
    _edit(run, change)
    before = snapshot(run)
    if command == "evaluate":
        result = convprop("evaluate", str(run))
    else:
        result = convprop("train", "--resume", str(run), "--epochs", "2", "--quiet")
    assert_one_line_error(result, fragment)
    assert snapshot(run) == before


@pytest.mark.parametrize(
    "damage",
    [
        lambda run: (run / "checkpoint.json").write_text("{not json"),
        lambda run: (run / "checkpoint.json").write_text("[1, 2]"),
        lambda run: (run / "model.safetensors").write_bytes(b"\x00" * 12),
        lambda run: next((run / "state").glob("*.optimizer.*")).write_bytes(b"junk"),
    ],
    ids=["not_json", "not_object", "weights", "optimizer_arrays"],
)
def test_damaged_files_of_a_run(run: Path, damage) -> None:
    damage(run)
    evaluated = convprop("evaluate", str(run))
    resumed = convprop("train", "--resume", str(run), "--epochs", "2", "--quiet")
    for result in (evaluated, resumed):
        if result.returncode != 0:
            assert_one_line_error(result, str(run))
    assert evaluated.returncode == 2 or resumed.returncode == 2


# ----------------------------------------------------------------------------- resume and runs
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--lr", "0.5"], ["--lr 0.5 conflicts with the run's saved lr 0.003"]),
        (["--model", "tdnn"], ["--model 'tdnn' conflicts with the run's saved model 'lenet5'"]),
        (["--out", "elsewhere"], ["--out elsewhere conflicts with --resume"]),
        (["--overwrite"], ["choose either --resume or --overwrite"]),
        (["--epochs", "0"], ["--epochs must be a positive integer"]),
    ],
)
def test_resume_refuses_flags_that_change_the_run(
    run: Path, args: list[str], fragments: list[str]
) -> None:
    before = snapshot(run)
    result = convprop("train", "--resume", str(run), *args, "--quiet", cwd=run.parent)
    assert_one_line_error(result, *fragments)
    assert snapshot(run) == before


def test_resume_accepts_flags_that_repeat_the_saved_configuration(run: Path) -> None:
    """The default learning rate (Adam's 0.003) and the saved model may be named again."""
    result = convprop(
        "train",
        "--resume",
        str(run),
        "--lr",
        "0.003",
        "--model",
        "lenet5",
        "--epochs",
        "2",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr


def test_resume_with_fewer_epochs_than_done(run: Path) -> None:
    resumed = convprop("train", "--resume", str(run), "--epochs", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    result = convprop("train", "--resume", str(run), "--epochs", "1", "--quiet")
    assert_one_line_error(result, "2 epochs are done already; --epochs 1 would end before them")
    done = convprop("train", "--resume", str(run), "--quiet")
    assert done.returncode == 0 and "all 2 of 2 epochs are done" in done.stdout


def test_resume_and_evaluate_notice_changed_training_data(tmp_path: Path) -> None:
    data = tmp_path / "digits.npz"
    labels = np.arange(40) % 2
    np.savez(data, images=_images(), labels=labels)
    run = tmp_path / "run"
    first = convprop(
        "train",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--scheduler",
        "none",
        "--quiet",
        "--out",
        str(run),
    )
    assert first.returncode == 0, first.stderr
    np.savez(data, images=_images()[::-1].copy(), labels=labels)
    result = convprop("train", "--resume", str(run), "--epochs", "2", "--quiet")
    assert_one_line_error(result, "the training data changed since", "resume needs the same data")
    evaluated = convprop("evaluate", str(run))
    assert_one_line_error(evaluated, "the data changed since", "evaluate on other data with --data")
    assert convprop("evaluate", str(run), "--data", str(data)).returncode == 0


def test_an_unfinished_run_names_one_way_out(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "state").mkdir(parents=True)  # as left by a run killed in its first epoch
    fresh = convprop("train", "--epochs", "1", *QUICK, "--out", str(run))
    assert_one_line_error(fresh, "never completed an epoch", "--overwrite")
    resumed = convprop("train", "--resume", str(run), "--quiet")
    assert_one_line_error(resumed, "never completed an epoch", "--overwrite")
    again = convprop("train", "--epochs", "1", *QUICK, "--out", str(run), "--overwrite")
    assert again.returncode == 0, again.stderr


# ----------------------------------------------------------------------------- other commands
def _folder(root: Path, names: list[str], size: int = 28) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(np.full((size, size), 40 * index, np.uint8)).save(
                root / name / f"{index}.png"
            )
    return root


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["evaluate", "{run}", "--data", "{folder:cat,dog}"],
            ["class(es) 'cat', 'dog' are not among the 10 classes"],
        ),
        (["evaluate", "{run}", "--data", ""], ["--data must name a bundled data set"]),
        (["evaluate", "{run}", "--weights", "first"], ["invalid choice: 'first'"]),
        (["evaluate", ""], ["argument RUN_DIR: expected a path, got an empty string"]),
        (["predict", "{run}", "{run}/metrics.csv"], ["metrics.csv: cannot read image"]),
        (["predict", "{run}", "missing.png"], ["missing.png: cannot read image"]),
        (
            ["predict", "{run}", "x.png", "--top-k", "0"],
            ["--top-k: must be a positive integer, got '0'"],
        ),
        (
            ["summary", "--input-shape", "28x28"],
            ["--input-shape: lenet5: expects images (C, H, W)"],
        ),
        (
            ["summary", "--input-shape", "a,b"],
            ["expected sizes like 1,28,28 (C,H,W) or 40,100 (C,L)"],
        ),
        (
            ["explain", "conv", "--input", "3x3", "--kernel", "2x2", "--seed", "-1"],
            ["--seed: must be a non-negative integer, got '-1'"],
        ),
        (
            [
                "explain",
                "conv",
                "--input",
                "3x3",
                "--kernel",
                "2x2",
                "--figure",
                "/no/such/dir/x.png",
            ],
            ["--figure /no/such/dir/x.png: no such directory"],
        ),
    ],
)
def test_other_commands(run: Path, tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    filled = []
    for arg in args:
        if arg.startswith("{folder:"):
            arg = str(_folder(tmp_path / "folder", arg[8:-1].split(",")))
        filled.append(arg.replace("{run}", str(run)))
    before = snapshot(run)
    result = convprop(*filled, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert snapshot(run) == before
    assert not Path("/no/such/dir").exists()


def test_evaluate_matches_class_folders_by_name(run: Path, tmp_path: Path) -> None:
    """Folders 3/ and 7/ are the digits 3 and 7, not classes 0 and 1."""
    from convprop.data import load_mnist_5k

    digits = load_mnist_5k()
    for name in ("3", "7"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for index in np.flatnonzero(digits.labels == int(name))[:5]:
            image = (digits.inputs[index, 0] * 255).astype(np.uint8)
            Image.fromarray(image).save(tmp_path / "folder" / name / f"{index}.png")
    result = convprop("evaluate", str(run), "--data", str(tmp_path / "folder"))
    assert result.returncode == 0, result.stderr
    support = {
        line.split()[0]: int(line.split()[-1])
        for line in result.stdout.splitlines()
        if len(line.split()) == 4 and line.split()[0].isdigit()
    }
    assert support == {str(d): (5 if d in (3, 7) else 0) for d in range(10)}
