"""The examples in the package's docstrings run as doctests, so the documentation cannot rot."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import numpy as np
import pytest

import convprop

# ``python -m convprop`` runs the command line when imported.
SKIPPED = {"convprop.__main__"}

MODULES = sorted(
    {"convprop"}
    | {
        info.name
        for info in pkgutil.walk_packages(convprop.__path__, prefix="convprop.")
        if info.name not in SKIPPED
    }
)

# Modules whose docstrings must hold examples: a test that finds none there has lost them.
WITH_EXAMPLES = {
    "convprop",
    "convprop.nn.functional.conv",
    "convprop.nn.module",
    "convprop.summary",
}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    with np.printoptions(legacy=False):
        result = doctest.testmod(
            module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
        )
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
    if name in WITH_EXAMPLES:
        assert result.attempted > 0, f"{name} lost its docstring examples"
