"""Scanning with a network is convolution: ``fully_convolutional`` against explicit crops.

Deck 004: "scanning an input with a network and combining the outcomes is equivalent to
scanning with individual neurons hierarchically". The reference is the classifier itself,
run on every crop of the canvas one at a time (float64, rounding-level tolerance); the
converted network must give all of those logits in one pass.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import convprop as cp
from convprop import nn
from convprop.models import FullyConvolutional, fully_convolutional, lenet5, resnet20

RTOL = 1e-12


def run(model: nn.Module, array: np.ndarray) -> np.ndarray:
    with cp.no_grad():
        return model(cp.from_numpy(np.ascontiguousarray(array))).numpy()


def crops_logits(
    model: nn.Module, canvas: np.ndarray, window: tuple[int, int], stride: tuple[int, int]
) -> np.ndarray:
    """The classifier on every window-sized crop at (stride_h i, stride_w j) that fits,
    one crop at a time: (N, classes, rows, cols)."""
    rows = (canvas.shape[2] - window[0]) // stride[0] + 1
    cols = (canvas.shape[3] - window[1]) // stride[1] + 1
    out = None
    for i in range(rows):
        for j in range(cols):
            top, left = stride[0] * i, stride[1] * j
            crop = canvas[:, :, top : top + window[0], left : left + window[1]]
            logits = run(model, crop)
            if out is None:
                out = np.zeros((*logits.shape, rows, cols))
            out[:, :, i, j] = logits
    assert out is not None
    return out


def assert_tight(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())


def small_sequential() -> nn.Sequential:
    """Strided conv, max pool, conv, overlapping avg pool; a head with Dropout; 2 channels."""
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, (3, 2)),
        nn.Tanh(),
        nn.AvgPool2d(2, stride=1),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(5 * 1 * 3, 7),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(7, 3),
    )


def test_unpadded_lenet_scans_every_crop_exactly() -> None:
    model = lenet5(input_size=32).double().eval()
    network = fully_convolutional(model)
    assert network.window == (32, 32)
    assert network.scan_stride == (4, 4)
    assert network.input_padding == (0, 0)
    canvas = np.random.default_rng(0).standard_normal((2, 1, 47, 52))
    out = run(network, canvas)
    assert out.shape == (2, 10, 4, 6)  # floor((47 - 32) / 4) + 1, floor((52 - 32) / 4) + 1
    assert out.dtype == np.float64
    assert_tight(out, crops_logits(model, canvas, (32, 32), (4, 4)))


def test_on_the_training_size_the_output_is_the_logits_as_a_1x1_map() -> None:
    model = lenet5(input_size=32).double().eval()
    images = np.random.default_rng(1).standard_normal((3, 1, 32, 32))
    out = run(fully_convolutional(model), images)
    assert out.shape == (3, 10, 1, 1)
    assert_tight(out[:, :, 0, 0], run(model, images))


def test_sequential_with_strides_dropout_and_a_non_square_window() -> None:
    model = small_sequential().double().eval()
    # 19x22: conv s2 -> 9x10, pool -> 4x5 (a spare row dropped), conv (3,2) -> 2x4,
    # avg pool s1 -> 1x3: what the first Linear (5 * 1 * 3) reads.
    window = (19, 22)
    assert run(model[:6], np.zeros((1, 2, *window))).shape == (1, 5, 1, 3)
    network = fully_convolutional(model, input_size=window)
    assert network.scan_stride == (4, 4)
    canvas = np.random.default_rng(2).standard_normal((2, 2, 34, 41))
    out = run(network, canvas)
    expected = crops_logits(model, canvas, window, (4, 4))
    assert expected.shape == (2, 3, 4, 5)
    # The spare row and column: the network reads 18x21 of each 19x22 window, so it has a
    # last row and column of positions whose window would pass the canvas's end.
    assert out.shape == (2, 3, 5, 6)
    assert_tight(out[:, :, :4, :5], expected)


def test_padded_first_layer_scans_crops_of_the_zero_padded_canvas() -> None:
    # lenet5 at 28 pads its first conv by 2; lenet5 at 32 is the same network unpadded (the
    # same parameter shapes), so it is the padded network's classifier seen on 32x32 crops.
    model = lenet5(input_size=28).double().eval()
    unpadded = lenet5(input_size=32).double().eval()
    unpadded.load_state_dict(model.state_dict())
    network = fully_convolutional(model)
    assert network.window == (28, 28) and network.input_padding == (2, 2)
    canvas = np.random.default_rng(3).standard_normal((2, 1, 44, 40))
    out = run(network, canvas)
    assert out.shape == (2, 10, 5, 4)  # one position per 28x28 crop that fits
    padded = np.pad(canvas, ((0, 0), (0, 0), (2, 2), (2, 2)))
    assert_tight(out, crops_logits(unpadded, padded, (32, 32), (4, 4)))


def test_padded_first_layer_equals_the_classifier_where_the_ring_around_the_crop_is_zero() -> None:
    model = lenet5(input_size=28).double().eval()
    network = fully_convolutional(model)
    rng = np.random.default_rng(4)
    canvas = np.zeros((1, 1, 44, 44))
    # Ink inside the crop at (8, 8) only, so its 2-pixel ring is zero; the crop at (4, 4)
    # has that ink within 2 pixels of its bottom/right edge, outside the crop.
    canvas[:, :, 8:36, 8:36] = rng.uniform(0.1, 1.0, (1, 1, 28, 28))
    out = run(network, canvas)
    centred = canvas[:, :, 8:36, 8:36]
    assert_tight(out[:, :, 2, 2], run(model, centred))
    # At the canvas border the ring lies in the padding: the corner crop with all its ink
    # (and none within 2 pixels outside it) agrees too.
    corner = np.zeros((1, 1, 40, 40))
    corner[:, :, :28, :28] = rng.uniform(0.1, 1.0, (1, 1, 28, 28))
    assert_tight(run(network, corner)[:, :, 0, 0], run(model, corner[:, :, :28, :28]))
    # Where the ring holds ink, the scan sees it and the lone crop does not: they differ.
    shifted = canvas[:, :, 4:32, 4:32]
    assert not np.allclose(out[:, :, 1, 1], run(model, shifted)[:, :], rtol=1e-6)


def test_same_padding_of_the_first_layer_is_its_explicit_padding() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding="same"), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)
    ).double()
    unpadded = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)
    ).double()
    unpadded.load_state_dict(model.state_dict())
    network = fully_convolutional(model, input_size=6)
    assert network.input_padding == (1, 1)
    canvas = np.random.default_rng(7).standard_normal((1, 1, 9, 10))
    padded = np.pad(canvas, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert_tight(run(network, canvas), crops_logits(unpadded, padded, (8, 8), (1, 1)))


def test_weights_are_copied_with_the_classifier_names_and_dtype() -> None:
    model = lenet5(input_size=32).double()
    network = fully_convolutional(model)
    ours, theirs = network.state_dict(), model.state_dict()
    assert list(ours) == list(theirs)
    first = theirs["classifier.1.weight"]
    np.testing.assert_array_equal(ours["classifier.1.weight"], first.reshape(120, 16, 5, 5))
    np.testing.assert_array_equal(
        ours["classifier.3.weight"][:, :, 0, 0], theirs["classifier.3.weight"]
    )
    assert all(value.dtype == np.float64 for value in ours.values())
    network.classifier[1].weight.data[...] = 0.0  # copies: the classifier keeps its weights
    network.features[0].weight.data[...] = 0.0
    assert np.any(model.classifier[1].weight.data != 0)
    assert np.any(model.features[0].weight.data != 0)
    assert isinstance(network.classifier[0], nn.Identity)


def test_the_modes_are_kept_and_the_probe_moves_no_statistics() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)
    )
    before = model[1].running_mean.numpy().copy()
    network = fully_convolutional(model, input_size=6)
    assert network.training and network[1].training and network[4].training
    np.testing.assert_array_equal(network[1].running_mean.numpy(), before)
    model.eval()
    assert not fully_convolutional(model, input_size=6)[4].training


def test_the_scanned_network_trains_like_the_classifier() -> None:
    # One window: the loss and every gradient equal the classifier's (reshaped).
    model = lenet5(input_size=32).double()
    network = fully_convolutional(model)
    images = np.random.default_rng(5).standard_normal((2, 1, 32, 32))
    target = cp.from_numpy(np.array([3, 7]))
    for net, reshape in ((model, False), (network, True)):
        logits = net(cp.from_numpy(images))
        loss = nn.functional.cross_entropy(logits.reshape(2, 10) if reshape else logits, target)
        loss.backward()
    for (_, ours), (_, theirs) in zip(
        network.named_parameters(), model.named_parameters(), strict=True
    ):
        assert ours.grad is not None and theirs.grad is not None
        assert_tight(ours.grad.numpy().reshape(theirs.shape), theirs.grad.numpy())


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            [nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3, padding=1)],
            "cannot convert 1 (Conv2d): it pads (padding=(1, 1)) and is not the first layer",
        ),
        (
            [nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3, padding="same")],
            "cannot convert 1 (Conv2d): it pads (padding='same')",
        ),
        ([nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(2)], "cannot convert 1 (AdaptiveAvgPool2d)"),
        ([nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, ceil_mode=True)], "1 (MaxPool2d): ceil_mode"),
        ([nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, padding=1)], "1 (AvgPool2d): it pads"),
        ([nn.Upsample(scale_factor=2), nn.Conv2d(1, 2, 3)], "cannot convert 0 (Upsample)"),
    ],
)
def test_features_that_do_not_scan_are_refused_by_name(
    layers: list[nn.Module], message: str
) -> None:
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fully_convolutional(model, input_size=6)


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ([nn.Flatten(), nn.Linear(32, 4), nn.BatchNorm1d(4)], r"4 \(BatchNorm1d\): the head"),
        ([nn.Flatten(0), nn.Linear(32, 4)], r"2 \(Flatten\): expected one Flatten"),
        ([nn.Flatten(), nn.Linear(32, 4), nn.Flatten()], r"4 \(Flatten\): expected one"),
        ([nn.Flatten(), nn.ReLU()], "the head has no Linear layer"),
        (
            [nn.Flatten(), nn.Linear(30, 4)],
            r"3 \(Linear\): it takes 30 features, but at input_size 6x6 the features give "
            r"2x4x4 = 32",
        ),
    ],
)
def test_heads_that_cannot_be_convolutions_are_refused_by_name(
    head: list[nn.Module], message: str
) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), *head)
    with pytest.raises(ValueError, match=message):
        fully_convolutional(model, input_size=6)


def test_other_models_and_missing_sizes_are_refused() -> None:
    with pytest.raises(TypeError, match="must be a LeNet5 or an nn.Sequential.*got CifarResNet"):
        fully_convolutional(resnet20())
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 2))
    with pytest.raises(ValueError, match="input_size is needed"):
        fully_convolutional(model)
    with pytest.raises(ValueError, match="has no Flatten"):
        fully_convolutional(nn.Sequential(nn.Conv2d(1, 2, 3)), input_size=6)
    with pytest.raises(ValueError, match="input_size 2x2 does not fit the features"):
        fully_convolutional(model, input_size=2)
    with pytest.raises(ValueError, match="features have no Conv2d"):
        fully_convolutional(nn.Sequential(nn.Flatten(), nn.Linear(36, 2)), input_size=6)


def test_a_canvas_smaller_than_the_window_is_refused() -> None:
    network = fully_convolutional(lenet5())
    assert isinstance(network, FullyConvolutional)
    with pytest.raises(ValueError, match=r"at least 28x28 .* got shape \(1, 1, 27, 40\)"):
        network(cp.from_numpy(np.zeros((1, 1, 27, 40), np.float32)))


def test_softmax_heads_keep_their_axis() -> None:
    model = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(1, 2, 3),
            flat=nn.Flatten(),
            fc=nn.Linear(32, 3),
            soft=nn.Softmax(dim=-1),
        )
    ).double()
    network = fully_convolutional(model, input_size=6)
    canvas = np.random.default_rng(6).standard_normal((1, 1, 9, 8))
    out = run(network, canvas)
    assert_tight(out, crops_logits(model, canvas, (6, 6), (1, 1)))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
