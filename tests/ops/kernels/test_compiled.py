"""The compiled-loop helper (ops/kernels/compiled): lazy numba import, results, threads, NaN."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import convprop as cp
import convprop.nn.functional as F
from convprop.ops.kernels import relu as relu_kernels
from convprop.ops.kernels.compiled import compiled


def test_importing_convprop_does_not_import_numba() -> None:
    """numba's import (~0.3 s) is paid on the first compiled call, not by every program."""
    code = "import sys, convprop, convprop.nn; print('numba' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def _source_copy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of convprop's source without any cache, and an environment that imports it."""
    source = tmp_path / "src"
    shutil.copytree(
        Path(cp.__file__).parent, source / "convprop", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONDONTWRITEBYTECODE": "1"}
    env["CONVPROP_ALGORITHM"] = "fast"  # the compiled loops run on the fast path only
    env.pop("NUMBA_CACHE_DIR", None)
    return source, env


def test_with_nowhere_to_cache_the_cli_compiles_without_a_cache(tmp_path: Path) -> None:
    """A user whose HOME and site-packages are read-only: numba finds no directory to cache
    in ("cannot cache function ...: no locator available"). Made so for any user, root
    included (whom permissions do not stop): a regular file stands where each directory
    numba tries would be (``__pycache__`` beside the source, NUMBA_CACHE_DIR, the user's
    cache directory), so none can be created."""
    source, env = _source_copy(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for package in [source / "convprop", *(source / "convprop").rglob("*")]:
        if package.is_dir():
            (package / "__pycache__").write_text("")
    env.update(
        NUMBA_CACHE_DIR=str(blocker / "numba"),
        HOME=str(blocker / "home"),
        XDG_CACHE_HOME=str(blocker / "cache"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "convprop", "summary", "--model", "resnet20"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Total params: 272,186" in result.stdout
    assert not list(tmp_path.rglob("*.nbi"))  # nothing cached anywhere


_STRIDED_CONV = (
    "import convprop as cp, convprop.nn.functional as F; "
    "print(F.conv2d(cp.ones(1, 1, 5, 5), cp.ones(1, 1, 3, 3), stride=2).sum().item())"
)


@pytest.mark.parametrize("damage", ["corrupt", "unreadable"])
def test_a_cache_numba_cannot_read_gives_no_error(tmp_path: Path, damage: str) -> None:
    """A cache written by an earlier process, then made corrupt (garbage in its index files:
    pickle's errors) or unreadable (a directory in their place: an OSError, as from a
    directory that turned read-only): the loops compile again without the cache and run."""
    _, env = _source_copy(tmp_path)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")

    def run() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", _STRIDED_CONV]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    first = run()
    assert first.returncode == 0 and first.stdout.strip() == "36.0", first.stderr
    indexes = list((tmp_path / "cache").rglob("*.nbi"))
    assert indexes  # the first process cached its loops there
    for index in indexes:
        if damage == "corrupt":
            index.write_bytes(b"not a pickle")
        else:
            index.unlink()
            index.mkdir()
    second = run()
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr and second.stdout.strip() == "36.0"


@compiled
def _scaled_sum(values: np.ndarray, factor: float, out: np.ndarray) -> None:
    total = 0.0
    for i in range(values.size):
        out[i] = values[i] * factor
        total += values[i]
    out[0] = total


def test_a_compiled_loop_computes_what_its_python_says_in_each_dtype() -> None:
    for dtype in (np.float32, np.float64):
        values = np.arange(1, 6, dtype=dtype)
        out = np.empty_like(values)
        _scaled_sum(values, 2.0, out)
        np.testing.assert_array_equal(out, np.array([15, 4, 6, 8, 10], dtype=dtype))


def test_first_calls_from_several_threads_compile_once_and_all_succeed() -> None:
    @compiled
    def doubled(values: np.ndarray, out: np.ndarray) -> None:
        for i in range(values.size):
            out[i] = 2 * values[i]

    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def call(seed: int) -> None:
        values = np.random.default_rng(seed).standard_normal(100)
        out = np.empty_like(values)
        try:
            doubled(values, out)
            np.testing.assert_array_equal(out, 2 * values)
            results.append(out)
        except BaseException as error:  # collected for the main thread's assertion
            errors.append(error)

    threads = [threading.Thread(target=call, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4


def test_relu_gradient_passes_nan_and_blocks_the_rest_as_pytorch() -> None:
    """No fast-math flag assumes finite values: a NaN output passes its gradient (PyTorch's
    threshold_backward), zero and negative outputs block it."""
    out = np.array([np.nan, 0.0, -0.0, 2.0, np.inf], dtype=np.float32)
    grad = np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float32)
    result = relu_kernels.backward(grad, out)
    np.testing.assert_array_equal(result, [1.0, 0.0, 0.0, 4.0, 5.0])
    assert result.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("conv2d", lambda x: F.conv2d(x, cp.tensor(np.ones((2, 3, 3, 3), x.dtype)), stride=2)),
        ("batch_norm", lambda x: F.batch_norm(x, None, None, training=True)),
        ("relu", F.relu),
        ("max_pool2d", lambda x: F.max_pool2d(x, 2)),
    ],
)
def test_ops_with_compiled_loops_refuse_other_float_dtypes_clearly(name, call, dtype) -> None:
    """The compiled loops are built for float32 and float64; a float16 or long double input
    gets the ops' own TypeError, not an error from inside numba."""
    x = cp.tensor(np.ones((2, 3, 6, 6), dtype))
    message = f"{name}: input must have a floating-point dtype (float32 or float64), got"
    with pytest.raises(TypeError, match=re.escape(message)):
        call(x)
