"""``convprop.nn.functional``: PyTorch's functional API, each function recording a graph node.

The wrappers live in one module per op family (mirroring ``convprop.ops``) and are all
re-exported here, so ``import convprop.nn.functional as F`` gives ``F.conv2d``, ``F.relu``, ...
"""

from convprop.nn.functional.activation import *  # noqa: F403
from convprop.nn.functional.conv import *  # noqa: F403
from convprop.nn.functional.linear import *  # noqa: F403
from convprop.nn.functional.loss import *  # noqa: F403
from convprop.nn.functional.normalization import *  # noqa: F403
from convprop.nn.functional.pooling import *  # noqa: F403
from convprop.nn.functional.resample import *  # noqa: F403
