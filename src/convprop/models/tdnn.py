"""A time-delay neural network (Waibel et al. 1989; Peddinti et al. 2015) for sequences.

Each layer is a 1-D convolution over time: output frame t sees input frames t, t + d, ...,
t + (k - 1) d (the "time delays"), with the same weights at every t, the 1-D weight sharing of
deck 001. Dilations grow layer by layer so the receptive field widens cheaply; the frame-level
features are averaged over time and classified.
"""

from __future__ import annotations

from collections.abc import Sequence

from convprop import nn
from convprop.autograd import Tensor
from convprop.models._common import check_positive_int

DEFAULT_CONTEXT: tuple[tuple[int, int], ...] = ((5, 1), (3, 2), (3, 3), (1, 1))


class TDNN(nn.Module):
    """Frame layers Conv1d(kernel k, dilation d) - ReLU - BatchNorm1d for each (k, d) of
    ``context``, then the mean over time and a linear classifier.

    Shape: (N, in_channels, L) -> (N, num_classes), for L at least the receptive field
    1 + sum (k - 1) d (15 frames with the default context).
    """

    def __init__(
        self,
        in_channels: int = 40,
        num_classes: int = 10,
        channels: int = 64,
        context: Sequence[tuple[int, int]] = DEFAULT_CONTEXT,
    ) -> None:
        super().__init__()
        check_positive_int(
            "tdnn", in_channels=in_channels, num_classes=num_classes, channels=channels
        )
        if not context:
            raise ValueError("tdnn: context must list at least one (kernel, dilation) pair")
        layers: list[nn.Module] = []
        previous = in_channels
        for kernel, dilation in context:
            check_positive_int("tdnn", kernel=kernel, dilation=dilation)
            layers += [
                nn.Conv1d(previous, channels, kernel, dilation=dilation),
                nn.ReLU(),
                nn.BatchNorm1d(channels),
            ]
            previous = channels
        self.receptive_field = 1 + sum((k - 1) * d for k, d in context)
        self.frames = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[-1] < self.receptive_field:
            raise ValueError(
                f"tdnn: expected input (N, C, L) with L >= {self.receptive_field} (the receptive "
                f"field), got shape {tuple(x.shape)}"
            )
        return self.classifier(self.pool(self.frames(x)).flatten(1))


def tdnn(
    in_channels: int = 40,
    num_classes: int = 10,
    channels: int = 64,
    context: Sequence[tuple[int, int]] = DEFAULT_CONTEXT,
) -> TDNN:
    """A TDNN over (N, in_channels, L) sequences."""
    return TDNN(in_channels, num_classes, channels, context)
