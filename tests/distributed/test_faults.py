"""A failing rank ends the whole job quickly (no rank left waiting in a collective), with a
non-zero exit and the failing rank's one-line message."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.launch import convprop_lines, run_ranks

LIMIT_SECONDS = 30


@pytest.mark.parametrize(("mode", "status"), [("raise", 2), ("exit", 3), ("kill", None)])
def test_a_failing_rank_ends_the_job(tmp_path: Path, mode: str, status: int | None) -> None:
    finished, seconds = run_ranks("ranks_faults.py", tmp_path, mode, timeout=2 * LIMIT_SECONDS)
    assert finished.returncode != 0, finished.stderr
    if status is not None:
        assert finished.returncode == status, finished.stderr
    assert seconds < LIMIT_SECONDS
    assert not list(tmp_path.glob("*-finished"))
    ours = convprop_lines(finished.stderr)
    if mode == "raise":
        assert ours == ["convprop: error: rank 1: rank one fails on purpose"], finished.stderr
        assert "Traceback" not in finished.stderr
    else:
        assert ours == [], finished.stderr
