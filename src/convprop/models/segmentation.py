"""Fully-convolutional segmenters: a class score for every pixel (deck 004, "segmentation").

An encoder of convolutions and 2x2 max pooling halves the map at each level and widens it; a
decoder brings the map back to the input's size with transposed convolutions of kernel 2 and
stride 2, the notes' upsampling (insert one zero between neighbouring samples, then convolve:
``ConvTranspose2d`` is exactly that, see ``convprop.ops.conv``). After each upsampling the
encoder's map of the same size is concatenated to it (the skip connection: the fine detail that
pooling threw away), and convolutions mix the two. A 1x1 convolution gives every pixel its
class scores, which per-pixel softmax + cross-entropy reads (``F.cross_entropy`` on (N, C, H,
W) logits and (N, H, W) targets, with ``ignore_index`` for unlabelled pixels).

Backward runs the same path in reverse: each transposed convolution's input gradient is an
ordinary strided convolution of the incoming delta, each concatenation hands its two inputs
their own slices of the gradient, and an encoder map read both by the next level and by its
skip connection sums the gradients of both uses.

Both builders make this network with two 3x3 convolutions (each followed by batch norm and
ReLU) per level, as Ronneberger et al.'s U-Net (2015) has: ``fcn``, the default of ``convprop
train --task segment``, with three levels (16, 32 and 64 channels; a receptive field of 44
pixels, more than two digits' width on the canvases), and ``unet`` with four (16 to 128
channels), closer to the paper's depth. One convolution per level was measured too
short-sighted: its receptive field (22 pixels) barely covers a digit, and on the digit canvases
it reached a mean IoU of 0.59 after 8 of 12 epochs where two reached 0.85 (PyTorch, the same
recipe). A network takes any input whose height and width divide by 2 ** (levels - 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import convprop as cp
from convprop import nn
from convprop.autograd import Tensor
from convprop.models._common import check_positive_int


def conv_bn_relu(in_channels: int, out_channels: int, convolutions: int) -> nn.Sequential:
    """``convolutions`` times 3x3 convolution ('same' size, no bias: batch norm adds one),
    batch norm and ReLU."""
    layers: list[nn.Module] = []
    for i in range(convolutions):
        layers += [
            nn.Conv2d(
                in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Encoder-decoder with concatenated skips; ``widths[i]`` channels at level ``i``.

    Level 0 works at the input's size, level i at 1/2**i of it; the deepest level has no skip.
    Parameter names: ``encoder.<level>``, ``upsample.<i>`` (the transposed convolutions, deepest
    first), ``decoder.<i>`` and ``classifier``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 11,
        widths: Sequence[int] = (16, 32, 64),
        convolutions: int = 2,
    ) -> None:
        super().__init__()
        widths = tuple(widths)
        check_positive_int("unet", in_channels=in_channels, num_classes=num_classes)
        check_positive_int("unet", convolutions=convolutions)
        if len(widths) < 2:
            raise ValueError(f"unet: widths must give at least 2 levels, got {widths!r}")
        check_positive_int("unet", **{f"widths[{i}]": w for i, w in enumerate(widths)})
        self.levels = len(widths)
        self.encoder = nn.ModuleList(
            conv_bn_relu(in_channels if i == 0 else widths[i - 1], width, convolutions)
            for i, width in enumerate(widths)
        )
        self.pool = nn.MaxPool2d(2)
        deeper_first = list(reversed(widths))
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(deep, shallow, 2, stride=2)
            for deep, shallow in zip(deeper_first, deeper_first[1:], strict=False)
        )
        self.decoder = nn.ModuleList(
            conv_bn_relu(2 * shallow, shallow, convolutions) for shallow in deeper_first[1:]
        )
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        multiple = 2 ** (self.levels - 1)
        if x.ndim != 4 or x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(
                f"unet: expects (N, C, H, W) images with H and W multiples of {multiple}, "
                f"got input of shape {tuple(x.shape)}"
            )
        skips = []
        for level, encode in enumerate(self.encoder):
            x = encode(x if level == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the deepest map is the decoder's input, not a skip
        for upsample, decode in zip(self.upsample, self.decoder, strict=True):
            x = decode(cp.cat([upsample(x), skips.pop()], 1))
        return self.classifier(x)


def fcn(in_channels: int = 1, num_classes: int = 11, widths: Sequence[int] = (16, 32, 64)) -> UNet:
    """The default segmenter: three levels of two convolutions (inputs a multiple of 4)."""
    return UNet(in_channels, num_classes, widths, convolutions=2)


def unet(
    in_channels: int = 1, num_classes: int = 11, widths: Sequence[int] = (16, 32, 64, 128)
) -> UNet:
    """The deeper segmenter: four levels of two convolutions (inputs a multiple of 8)."""
    return UNet(in_channels, num_classes, widths, convolutions=2)
