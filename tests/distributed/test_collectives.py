"""The collectives under ``mpirun -n 2``: exact values, every rank alike; a sharded
evaluation's reduction equal to the whole set's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.distributed.launch import run_ranks_ok
from tests.distributed.ranks_collectives import confusion, evaluation_set


def test_collectives_and_sharded_evaluation(tmp_path: Path) -> None:
    ranks = run_ranks_ok("ranks_collectives.py", tmp_path)
    labels, predictions, losses = evaluation_set()
    for rank, result in enumerate(ranks):
        assert int(result["rank"]) == rank and int(result["world"]) == 2
        np.testing.assert_array_equal(result["sum"], 2 * np.arange(5.0) + 10)
        assert result["avg"].dtype == np.float32
        np.testing.assert_array_equal(result["avg"], np.full((2, 3), 1.5))
        np.testing.assert_array_equal(result["max"], [1, 0])
        np.testing.assert_array_equal(result["int_sum"], [3, 4])
        np.testing.assert_array_equal(result["tensor_sum"], [3.0, 3.0, 3.0])
        # from rank 1 (world - 1): its array is arange * 2
        np.testing.assert_array_equal(result["broadcast"], np.arange(4.0) * 2)
        assert int(result["broadcast_scalar"]) == 5
        np.testing.assert_array_equal(result["all_gather"], np.repeat([0.0, 1.0], 6).reshape(4, 3))
        np.testing.assert_array_equal(result["all_gather_object"], [0, 1])
        assert result["broadcast_object"].all()
        assert "all_reduce: tensor must be C-contiguous" in str(result["non_contiguous_error"])

        # The sharded evaluation equals one process's on the whole set.
        np.testing.assert_array_equal(result["eval_confusion"], confusion(labels, predictions))
        assert int(result["eval_correct"]) == int((labels == predictions).sum())
        assert int(result["eval_count"]) == len(labels)
        np.testing.assert_allclose(float(result["eval_loss_sum"]), losses.sum(), rtol=1e-14)
        np.testing.assert_array_equal(result["eval_predictions"], predictions)
        assert list(result["eval_types"]) == ["ndarray", "int", "int", "float"]
