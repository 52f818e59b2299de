"""Scanning is convolution: a classifier's Flatten + Linear head rewritten as convolutions.

Deck 004's recap: "scanning an input with a network and combining the outcomes is equivalent
to scanning with individual neurons hierarchically: first level neurons scan the input,
higher-level neurons scan the 'maps' formed by lower-level neurons; a final 'decision' unit or
layer makes the final decision". A CNN classifier trained on H x W images is such a scanner
run at one position only. Its convolution and pooling layers already scan; what does not is
the MLP at the end, which reads the whole last feature map (C, h, w) flattened. Seen at one
position of a larger map, though, the first Linear layer is a neuron whose window is the
h x w map: a ``Conv2d(C, out, (h, w))`` holding the same weights reshaped to
(out, C, h, w) (the Flatten order is C, then rows, then columns). Every later Linear only
reads the outputs of its own position: a 1x1 ``Conv2d``. :func:`fully_convolutional` makes
that rewrite (the 2-D sibling of :func:`convprop.models.to_conv1d`).

Run on a larger canvas, the result computes, in one pass, the classifier's scores on every
H x W crop whose corner lies on the grid of the features' total stride S (the product of
every convolution's and pooling layer's stride), sharing the work the crops have in common:

    out[:, :, i, j] = classifier(canvas[:, :, S_h i : S_h i + H, S_w j : S_w j + W])

for every crop that lies inside the canvas; on an H x W input the output is the classifier's
logits as a (N, classes, 1, 1) map. This holds exactly (to rounding) when no layer pads.

A first convolution that pads by P (LeNet-5 at 28 x 28 pads by 2) zero-pads the canvas once,
around its border, whereas the classifier zero-pads each crop. The exact statement is then
about crops of the padded canvas: ``out[:, :, i, j]`` is the unpadded classifier (the same
weights with padding 0) on the (H + 2P) x (W + 2P) crop of ``zero_pad(canvas, P)`` at
(S_h i, S_w j). It equals ``classifier(crop)`` on the H x W crop at (S_h i, S_w j) exactly when
the P-pixel ring around that crop, in the zero-padded canvas, is zero (the classifier's own
padding is zero there); elsewhere the scan sees the canvas's real pixels where the
classifier saw zeros, which is what a scanner should see. Zero means zero at the network's
input: a run that normalises its images pads with the normalised zero (the raw pixel
``mean``), so on a normalised blank background the ring is not zero and the equality is the
padded-canvas one only. Padding in any later layer is refused: there a crop sees zeros
inside its feature maps where the scan sees neighbouring features, and no crop of any canvas
gives the scan's value.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np

import convprop as cp
from convprop import nn
from convprop.autograd import Tensor
from convprop.autograd.tensor import as_array
from convprop.models._common import pair_size
from convprop.models.lenet import LeNet5
from convprop.ops import geometry

__all__ = ["FullyConvolutional", "fully_convolutional"]

# Point-wise layers allowed in the MLP head (between the Linears): they act on one vector per
# position, so they act on a (N, features, h, w) map unchanged.
HEAD_POINTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Identity,
    nn.Dropout,
)
# Layers that compute the same function of each position's values wherever they are applied
# (BatchNorm2d in eval mode: a per-channel affine map; in training mode its batch statistics
# would be those of the whole canvas).
POINTWISE: tuple[type[nn.Module], ...] = (*HEAD_POINTWISE, nn.Dropout2d, nn.BatchNorm2d)


class FullyConvolutional(nn.Sequential):
    """A classifier rewritten as convolutions: class scores at every window of a canvas.

    Built by :func:`fully_convolutional`; the children keep the classifier's names and order
    (``features``/``classifier`` for LeNet-5, ``0``, ``1``, ... for a Sequential), the Flatten
    replaced by an ``Identity`` and each Linear by a ``Conv2d``, so ``state_dict()`` keys are
    the classifier's (the Linear weights reshaped to 4-D).

    Attributes:
        window: (H, W), the classifier's input size: each output position scores one H x W
            crop of the canvas.
        scan_stride: (S_h, S_w), the features' total stride: output position (i, j) scores the
            crop whose top-left corner is (S_h i, S_w j).
        input_padding: (P_h, P_w), the zero padding of the first layer before the first row
            and column (see the module docstring for what the identity with crops is then).

    Shape: (N, C, H_in, W_in) -> (N, classes, floor((H_in - H) / S_h) + 1,
    floor((W_in - W) / S_w) + 1) for H_in >= H and W_in >= W (one row and column per crop
    that fits; a training size with spare rows beyond the receptive field can give more).
    """

    def __init__(
        self,
        layers: OrderedDict[str, nn.Module],
        window: tuple[int, int],
        scan_stride: tuple[int, int],
        input_padding: tuple[int, int],
    ) -> None:
        super().__init__(layers)
        self.window = window
        self.scan_stride = scan_stride
        self.input_padding = input_padding

    def forward(self, input: Tensor) -> Tensor:
        height, width = self.window
        if input.ndim != 4 or input.shape[2] < height or input.shape[3] < width:
            raise ValueError(
                f"FullyConvolutional: expected input (N, C, H, W) of at least {height}x{width} "
                f"(the size the classifier was trained on), got shape {tuple(input.shape)}"
            )
        return super().forward(input)

    def extra_repr(self) -> str:
        return (
            f"window={self.window}, scan_stride={self.scan_stride}, "
            f"input_padding={self.input_padding}"
        )


def fully_convolutional(
    model: nn.Module, input_size: int | Sequence[int] | None = None
) -> FullyConvolutional:
    """The network of convolutions that scans ``model`` over any canvas (deck 004).

    ``model`` is a :class:`~convprop.models.LeNet5` or an ``nn.Sequential`` made of feature
    layers (Conv2d, MaxPool2d, AvgPool2d, point-wise layers, nested Sequentials), then a
    ``Flatten`` and Linear layers with point-wise layers (activations, Dropout) between them.
    The first Linear, which reads the last feature map (C, h, w) flattened, becomes
    ``Conv2d(C, out, (h, w))`` with its weight reshaped to (out, C, h, w); every later Linear
    becomes a 1x1 ``Conv2d``. The feature map's size comes from a forward pass of the features
    on a zero image of ``input_size`` (H, W), the size the classifier was trained on; it
    defaults to the model's own ``input_size`` (LeNet-5 records it; a Sequential does not,
    and its first Linear's ``in_features`` cannot tell h from w).

    Weights are copied, not shared: a Linear weight (out, C h w) and a Conv2d weight
    (out, C, h, w) are different parameters with different shapes, so the two networks are
    independent (fine-tuning or ``.to(dtype)`` of one leaves the other); dtypes are kept.
    The training/eval mode of every layer is kept too.

    On a canvas, ``out[:, :, i, j]`` equals ``model`` on the H x W crop at
    (S_h i, S_w j) (``scan_stride``), exactly when no layer pads; with a padded first layer
    the exact statement is about crops of the zero-padded canvas (this module's docstring).

    Example:
        >>> import numpy as np, convprop as cp
        >>> from convprop.models import fully_convolutional, lenet5
        >>> scanner = fully_convolutional(lenet5(input_size=32))
        >>> scanner.window, scanner.scan_stride
        ((32, 32), (4, 4))
        >>> tuple(scanner(cp.from_numpy(np.zeros((1, 1, 64, 48), np.float32))).shape)
        (1, 10, 9, 5)

    Raises:
        TypeError: ``model`` is neither a LeNet5 nor an nn.Sequential.
        ValueError: a layer that cannot be converted (named, with the reason), or a missing or
            wrong ``input_size``.
    """
    layers: OrderedDict[str, nn.Module]
    if isinstance(model, LeNet5):
        features_name, features = "features", model.features
        head_name, head = "classifier", list(model.classifier.named_children())
        layers = OrderedDict([(features_name, copy.deepcopy(features))])
        feature_leaves = list(_leaves(features, features_name))
        head_prefix = f"{head_name}."
    elif isinstance(model, nn.Sequential):
        children = list(model.named_children())
        flatten_at = next(
            (i for i, (_, child) in enumerate(children) if isinstance(child, nn.Flatten)), None
        )
        if flatten_at is None:
            raise ValueError(
                "fully_convolutional: the Sequential has no Flatten, so there is no Linear head "
                "to convert (expected feature layers, Flatten, Linear layers)"
            )
        features_part = children[:flatten_at]
        head = children[flatten_at:]
        layers = OrderedDict((name, copy.deepcopy(child)) for name, child in features_part)
        feature_leaves = [leaf for name, child in features_part for leaf in _leaves(child, name)]
        head_name, head_prefix = "", ""
    else:
        raise TypeError(
            "fully_convolutional: model must be a LeNet5 or an nn.Sequential (feature layers, "
            f"Flatten, Linear layers), got {type(model).__name__}"
        )
    scan_stride, input_padding, in_channels = _check_features(feature_leaves)
    size = _input_size(model, input_size)
    map_shape = _feature_map_shape(layers, in_channels, size, _dtype(model))
    converted = _convert_head(head, head_prefix, map_shape, size)
    if head_name:
        layers[head_name] = nn.Sequential(converted)
    else:
        layers.update(converted)
    return FullyConvolutional(layers, size, scan_stride, input_padding)


def _leaves(module: nn.Module, name: str) -> Iterator[tuple[str, nn.Module]]:
    """The layers of a (nested) Sequential in the order it applies them, with their names."""
    if isinstance(module, nn.Sequential):
        for child_name, child in module.named_children():
            yield from _leaves(child, f"{name}.{child_name}")
    else:
        yield name, module


def _check_features(
    leaves: list[tuple[str, nn.Module]],
) -> tuple[tuple[int, int], tuple[int, int], int]:
    """The features' total stride, the first layer's padding and the input channels, after
    checking that every layer acts alike at every position of a larger input."""
    stride = np.ones(2, dtype=np.int64)
    input_padding = (0, 0)
    in_channels = None
    for index, (name, layer) in enumerate(leaves):
        described = f"{name} ({type(layer).__name__})"
        if isinstance(layer, nn.Conv2d):
            if in_channels is None:
                in_channels = layer.in_channels
            pads = geometry.conv_padding(
                layer.padding, layer.kernel_size, layer.stride, layer.dilation, described
            )
            if any(amount for pair in pads for amount in pair):
                if index > 0:
                    raise ValueError(
                        f"fully_convolutional: cannot convert {described}: it pads "
                        f"(padding={layer.padding!r}) and is not the first layer, so a crop "
                        "would see zeros inside its feature maps where the scan sees "
                        "neighbouring features"
                    )
                input_padding = (pads[0][0], pads[1][0])
            stride *= np.array(layer.stride)
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            if layer.ceil_mode:
                raise ValueError(
                    f"fully_convolutional: cannot convert {described}: ceil_mode=True gives a "
                    "crop a partial window at its edge where the scan has a full one"
                )
            if any(_pair(layer.padding)):
                raise ValueError(
                    f"fully_convolutional: cannot convert {described}: it pads "
                    f"(padding={layer.padding!r}), so a crop's windows at its edge differ from "
                    "the scan's"
                )
            if getattr(layer, "return_indices", False):
                raise ValueError(
                    f"fully_convolutional: cannot convert {described}: return_indices=True "
                    "returns a pair, not a map"
                )
            stride *= np.array(_pair(layer.stride))
        elif not isinstance(layer, POINTWISE):
            raise ValueError(
                f"fully_convolutional: cannot convert {described}: only Conv2d, MaxPool2d, "
                "AvgPool2d and point-wise layers are known to act alike at every position"
            )
    if in_channels is None:
        raise ValueError(
            "fully_convolutional: the features have no Conv2d, so the input's channels are "
            "unknown (expected Conv2d and pooling layers before the Flatten)"
        )
    return (int(stride[0]), int(stride[1])), input_padding, in_channels


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def _input_size(model: nn.Module, input_size: int | Sequence[int] | None) -> tuple[int, int]:
    if input_size is None:
        input_size = getattr(model, "input_size", None)
        if input_size is None:
            raise ValueError(
                "fully_convolutional: input_size is needed (the (H, W) the classifier was "
                f"trained on): a {type(model).__name__} does not record it, and the first "
                "Linear's in_features cannot tell the feature map's height from its width"
            )
    return pair_size("fully_convolutional", input_size)


def _dtype(model: nn.Module) -> np.dtype:
    parameter = next(iter(model.parameters()), None)
    return np.dtype(np.float32) if parameter is None else parameter.dtype


def _feature_map_shape(
    layers: OrderedDict[str, nn.Module], in_channels: int, size: tuple[int, int], dtype: np.dtype
) -> tuple[int, int, int]:
    """(C, h, w) of the last feature map for an input of ``size``: a forward pass of the
    features on zeros, in eval mode (so no running statistic moves), modes restored."""
    features = nn.Sequential(layers)
    modes = [(module, module.training) for module in features.modules()]
    features.eval()
    probe = cp.from_numpy(np.zeros((1, in_channels, *size), dtype=dtype))
    try:
        with cp.no_grad():
            output = features(probe)
    except ValueError as error:
        raise ValueError(
            f"fully_convolutional: input_size {size[0]}x{size[1]} does not fit the features "
            f"({error})"
        ) from None
    finally:
        for module, training in modes:
            module.training = training
    _, channels, height, width = output.shape
    return int(channels), int(height), int(width)


def _convert_head(
    head: list[tuple[str, nn.Module]],
    prefix: str,
    map_shape: tuple[int, int, int],
    size: tuple[int, int],
) -> OrderedDict[str, nn.Module]:
    """Flatten -> Identity, the first Linear -> Conv2d with the feature map as kernel, every
    later Linear -> 1x1 Conv2d, point-wise layers copied; the children's names kept."""
    channels, height, width = map_shape
    converted: OrderedDict[str, nn.Module] = OrderedDict()
    flattened = False
    linears = 0
    for name, layer in head:
        described = f"{prefix}{name} ({type(layer).__name__})"
        if isinstance(layer, nn.Flatten):
            if flattened or linears or (layer.start_dim, layer.end_dim) != (1, -1):
                raise ValueError(
                    f"fully_convolutional: cannot convert {described}: expected one Flatten "
                    "(start_dim=1, end_dim=-1) before the first Linear"
                )
            flattened = True
            converted[name] = nn.Identity()
        elif isinstance(layer, nn.Linear):
            if not flattened:
                raise ValueError(
                    f"fully_convolutional: cannot convert {described}: no Flatten before it"
                )
            if linears == 0:
                expected = channels * height * width
                if layer.in_features != expected:
                    raise ValueError(
                        f"fully_convolutional: cannot convert {described}: it takes "
                        f"{layer.in_features} features, but at input_size {size[0]}x{size[1]} "
                        f"the features give {channels}x{height}x{width} = {expected}"
                    )
                kernel: tuple[int, int] = (height, width)
                weight_shape = (layer.out_features, channels, height, width)
            else:
                kernel = (1, 1)
                weight_shape = (layer.out_features, layer.in_features, 1, 1)
            conv = nn.Conv2d(
                layer.in_features // (kernel[0] * kernel[1]),
                layer.out_features,
                kernel,
                bias=layer.bias is not None,
                dtype=layer.weight.dtype,
            )
            # The Flatten order is (C, h, w), C-contiguous: a plain reshape of each row.
            conv.weight.data = np.array(as_array(layer.weight).reshape(weight_shape), copy=True)
            if layer.bias is not None and conv.bias is not None:
                conv.bias.data = np.array(as_array(layer.bias), copy=True)
            conv.train(layer.training)
            converted[name] = conv
            linears += 1
        elif isinstance(layer, (nn.Softmax, nn.LogSoftmax)) and layer.dim in (None, 1, -1):
            # Over the features of one position: axis 1 of both (N, K) and (N, K, h, w).
            converted[name] = type(layer)(dim=1)
        elif isinstance(layer, HEAD_POINTWISE) and flattened:
            converted[name] = copy.deepcopy(layer)
        else:
            raise ValueError(
                f"fully_convolutional: cannot convert {described}: the head may hold only a "
                "Flatten, Linear layers and point-wise layers (activations, Dropout)"
            )
    if not linears:
        raise ValueError("fully_convolutional: the head has no Linear layer to convert")
    return converted
