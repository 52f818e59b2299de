"""ONNX: export a convprop network for any runtime, and import networks exported elsewhere.

* :func:`export` traces one forward pass of a ``convprop.nn.Module`` (``convprop.autograd.trace``)
  and writes the ONNX graph of the ops it ran, every parameter and buffer an initializer under
  its ``state_dict`` name; ``onnx.checker`` accepts it and onnxruntime runs it.
* :func:`load` builds a convprop module from an ONNX graph: the initializers become
  ``Parameter``s (batch norm's statistics buffers) under their ONNX names, and the graph runs
  through convprop's own ops, so the imported network back-propagates through the
  hand-derived backward passes, trains with ``convprop.optim`` and saves with ``state_dict``.

Both need the ``onnx`` extra (``pip install 'convprop[onnx]'``: onnx, onnxruntime), imported
only when they are used. The default opset is :data:`DEFAULT_OPSET` (28), the newest that the
extra's onnx (>= 1.23) writes and its onnxruntime (>= 1.32) runs for every operator convprop
writes; ``opset_version`` down to :data:`OLDEST_OPSET` (13) serves older runtimes.
"""

from __future__ import annotations

from typing import Any

DEFAULT_OPSET = 28
OLDEST_OPSET = 13


class OnnxError(ValueError):
    """A network or file that cannot be exported or imported, with the reason."""


class MissingExtraError(ImportError):
    """The ``onnx`` extra is not installed."""


def require(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or say in one line what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"ONNX support needs the {module} package: pip install 'convprop[onnx]'"
        ) from None


from convprop.onnx.exporting import export  # noqa: E402 - after the errors it raises
from convprop.onnx.importing import load  # noqa: E402

__all__ = ["DEFAULT_OPSET", "OLDEST_OPSET", "MissingExtraError", "OnnxError", "export", "load"]
