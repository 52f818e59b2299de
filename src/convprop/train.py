"""The name convprop 0.1 gave its training API; it lives in :mod:`convprop.training` now.

``import convprop.train as training`` keeps working: every public name is re-exported.
"""

from convprop.training import *  # noqa: F403
from convprop.training import __all__  # noqa: F401
