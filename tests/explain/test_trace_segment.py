"""explain.trace on a segmenter: a small U-Net's layers, forward and backward, equal to
PyTorch's for the same weights, image and mask; the per-pixel loss and its gradient rule with
ignored pixels; the rules of the transposed convolution and the skip concatenation with their
numbers; the checks; the JSON, text and markdown."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import convprop as cp
from convprop.data.canvases import IGNORE
from convprop.explain.trace import AGREEMENT, Trace, trace
from convprop.models import UNet

torch = pytest.importorskip("torch")
from tests.models.mirrors import TorchUNet  # noqa: E402

SIZE = 16
CLASSES = 3


def unet(dtype: str, seed: int = 0) -> UNet:
    """UNet(1, 3, (4, 8), 2) with random batch-norm statistics and affine parameters, so that
    eval-mode batch norm is not the identity."""
    cp.manual_seed(seed)
    network = UNet(1, CLASSES, (4, 8), 2)
    rng = np.random.default_rng(seed)
    state = network.state_dict()
    for key, value in state.items():
        if key.endswith(("running_mean", ".bias")):
            state[key] = rng.normal(0.0, 0.3, value.shape).astype(value.dtype)
        elif key.endswith("running_var") or (key.endswith(".weight") and value.ndim == 1):
            state[key] = rng.uniform(0.5, 1.5, value.shape).astype(value.dtype)
    network.load_state_dict(state)
    return network.double() if dtype == "float64" else network


def image_and_mask(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((1, SIZE, SIZE))
    mask = rng.integers(0, CLASSES, (SIZE, SIZE))
    mask[0, :5] = IGNORE
    mask[7:9, 3:6] = IGNORE
    return image, mask


def torch_pass(network: UNet, image: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """The torch mirror with ``network``'s weights: every leaf module's outputs and output
    gradients by name (in call order), the decoder's concatenated input and its gradient, the
    loss, the parameters' gradients and the image's."""
    mirror = TorchUNet(1, CLASSES, (4, 8), 2)
    mirror.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in network.state_dict().items()}
    )
    dtype = torch.float64 if image.dtype == np.float64 else torch.float32
    mirror = mirror.to(dtype).eval()
    outputs: dict[str, list[np.ndarray]] = {}
    grads: dict[str, list[np.ndarray]] = {}
    joined: dict[str, np.ndarray] = {}
    for name, layer in mirror.named_modules():
        if next(layer.children(), None) is not None:
            continue

        def keep(layer: Any, args: Any, output: Any, name: str = name) -> None:
            outputs.setdefault(name, []).append(output.detach().numpy()[0].copy())
            output.register_hook(
                lambda g, name=name: grads.setdefault(name, []).insert(0, g.numpy()[0].copy())
            )

        layer.register_forward_hook(keep)

    def concatenated(layer: Any, args: Any) -> None:
        joined["output"] = args[0].detach().numpy()[0].copy()
        args[0].register_hook(lambda g: joined.__setitem__("grad", g.numpy()[0].copy()))

    mirror.decoder[0][0].register_forward_pre_hook(concatenated)
    x = torch.from_numpy(image[None]).requires_grad_(True)
    scores = mirror(x)
    loss = torch.nn.functional.cross_entropy(
        scores, torch.from_numpy(mask[None].astype(np.int64)), ignore_index=IGNORE
    )
    loss.backward()
    return {
        "outputs": outputs,
        "grads": grads,
        "joined": joined,
        "loss": float(loss.detach()),
        "parameters": {k: p.grad.numpy() for k, p in mirror.named_parameters()},
        "input_grad": x.grad.numpy()[0],
    }


def close(ours: np.ndarray, theirs: np.ndarray, rtol: float, what: str) -> None:
    scale = max(float(np.abs(theirs).max()), 1e-30)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize(("dtype", "rtol"), [("float32", 1e-5), ("float64", 1e-10)])
def test_the_segmenter_trace_equals_pytorch(dtype: str, rtol: float) -> None:
    network = unet(dtype)
    image, mask = image_and_mask()
    image = image.astype(dtype)
    result = trace(network, image, mask, checks=0)
    theirs = torch_pass(network, image, mask)
    assert result.task == "segment"
    assert result.loss == pytest.approx(theirs["loss"], rel=rtol)
    calls: dict[str, int] = {}
    for entry in result.entries[:-1]:
        if entry.type == "cat":
            continue
        call = calls.get(entry.name, 0)
        calls[entry.name] = call + 1
        close(entry.output, theirs["outputs"][entry.name][call], rtol, f"{entry.name} output")
        close(entry.grad_output, theirs["grads"][entry.name][call], rtol, f"{entry.name} delta")
        for kind, values in (("weight", entry.grad_weight), ("bias", entry.grad_bias)):
            if values is not None:
                key = f"{entry.name}.{kind}"
                close(values, theirs["parameters"][key], rtol, f"dL/d {key}")
    assert calls["pool"] == 1 and calls["upsample.0"] == 1 and len(calls) == 21
    (cat,) = [entry for entry in result.entries if entry.type == "cat"]
    close(cat.output, theirs["joined"]["output"], rtol, "cat output")
    close(cat.grad_output, theirs["joined"]["grad"], rtol, "cat delta")
    close(result.entries[0].grad_input, theirs["input_grad"], rtol, "dL/dx of the image")
    loss = result.entries[-1]
    close(loss.grad_input, theirs["grads"]["classifier"][0], rtol, "dL/ds")


def test_the_skip_connection_splits_at_the_join_and_adds_at_the_fork() -> None:
    result = trace(unet("float64"), *image_and_mask(), checks=0)
    names = [entry.name for entry in result.entries]
    cat = result.entries[names.index("cat")]
    upsample, skip = (result.entries[i] for i in cat.sources)
    assert (upsample.name, skip.name) == ("upsample.0", "encoder.0.5")
    assert cat.shape_arithmetic == "4 + 4 channels = 8: (4, 16, 16) + (4, 16, 16) -> (8, 16, 16)"
    assert "0..3 to input 1, 4..7 to input 2" in cat.rule
    np.testing.assert_array_equal(cat.grad_input[0], cat.grad_output[:4])
    np.testing.assert_array_equal(cat.grad_input[1], cat.grad_output[4:])
    # encoder.0.5's map feeds the pool and the skip: its delta is the sum of the two shares.
    pool = result.entries[names.index("pool")]
    np.testing.assert_allclose(
        skip.grad_output, pool.grad_input + cat.grad_input[1], rtol=0, atol=1e-15
    )


def test_the_transposed_convolution_is_what_its_rule_says() -> None:
    """Forward: the input zero-inserted, padded and correlated with the channel-swapped Rot180
    kernels; backward: delta correlated with the kernels at the stride. Checked with NumPy
    alone on the traced numbers."""
    result = trace(unet("float64"), *image_and_mask(), checks=0)
    entry = next(e for e in result.entries if e.type == "ConvTranspose2d")
    assert entry.rule.startswith(
        "transposed convolution 2x2: forward = the input (8x8x8) zero-inserted (1 zero between "
        "neighbours), padded by 1x1 and correlated with the channel-swapped Rot180 kernels"
    )
    assert "dL/dx = delta (16x16x4) correlated with the kernels at stride 2x2" in entry.rule
    x, weight, bias = entry.input, entry.weight, entry.bias  # weight (in, out, 2, 2)
    assert weight is not None and bias is not None
    channels, height, width = x.shape
    inserted = np.zeros((channels, 2 * height - 1, 2 * width - 1))
    inserted[:, ::2, ::2] = x
    padded = np.pad(inserted, ((0, 0), (1, 1), (1, 1)))
    swapped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (out, in, 2, 2), rotated
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2, 2), axis=(1, 2))
    forward = np.einsum("chwpq,ocpq->ohw", windows, swapped) + bias[:, None, None]
    close(forward, entry.output, 1e-12, "zero insertion, then convolution")
    delta = entry.grad_output
    strided = np.lib.stride_tricks.sliding_window_view(delta, (2, 2), axis=(1, 2))[:, ::2, ::2]
    backward = np.einsum("ohwpq,copq->chw", strided, weight)
    close(backward, entry.grad_input, 1e-12, "a strided convolution of delta")
    close(delta.sum(axis=(1, 2)), entry.grad_bias, 1e-12, "dL/db")


def softmax(scores: np.ndarray) -> np.ndarray:
    exponentials = np.exp(scores - scores.max(axis=0))
    return exponentials / exponentials.sum(axis=0)


def test_the_loss_is_the_mean_over_labelled_pixels_and_its_gradient_rule() -> None:
    image, mask = image_and_mask()
    result = trace(unet("float64"), image, mask, checks=0)
    loss = result.entries[-1]
    labelled = mask != IGNORE
    count = int(labelled.sum())
    assert count == SIZE * SIZE - 11
    assert loss.config == {"ignore_index": IGNORE, "labelled_pixels": count}
    assert loss.shape_arithmetic == (
        f"3 scores at each of 16x16 pixels -> 1 loss (the mean over {count} labelled pixels)"
    )
    assert loss.rule == (
        f"per-pixel softmax + cross-entropy, the mean over the {count} labelled pixels (11 "
        f"ignored): dL/ds = (p - onehot(mask)) / {count} at each labelled pixel, 0 at the "
        "ignored ones (mask 255)"
    )
    p = softmax(loss.input)
    rows, cols = np.nonzero(labelled)
    picked = p[mask[rows, cols], rows, cols]
    assert result.loss == pytest.approx(float(-np.log(picked).mean()), rel=1e-12)
    onehot = np.zeros_like(p)
    onehot[mask[rows, cols], rows, cols] = 1.0
    expected = np.where(labelled, (p - onehot) / count, 0.0)
    close(loss.grad_input, expected, 1e-12, "(p - onehot(mask)) / N")
    assert not loss.grad_input[:, ~labelled].any()  # exactly 0 at the ignored pixels
    assert loss.check["max_rel_error"] < 1e-12 and loss.check["entries"] == p.size
    np.testing.assert_allclose(result.probabilities, p, rtol=1e-12)


def test_the_finite_difference_checks_pass_on_a_float64_segmenter() -> None:
    result = trace(unet("float64", seed=2), *image_and_mask(seed=3), checks=2)
    assert result.max_rel_error < AGREEMENT
    assert all(entry.check["entries"] > 0 for entry in result.entries)


def test_a_flat_background_has_ties_that_are_skipped_not_failed() -> None:
    """On a canvas-like image (a flat background and one bright block) tied maxima move apart
    under a perturbation: the loss has no derivative along such entries, which are skipped
    and replaced, and every entry that can be checked agrees."""
    image = np.zeros((1, SIZE, SIZE))
    image[0, 4:10, 5:9] = 2.0
    mask = np.zeros((SIZE, SIZE), np.int64)
    mask[4:10, 5:9] = 1
    result = trace(unet("float64", seed=4), image, mask, checks=2)
    assert result.max_rel_error < AGREEMENT
    assert sum(int(entry.check.get("skipped", 0)) for entry in result.entries) > 0
    assert all(entry.check["entries"] > 0 for entry in result.entries)


def test_the_default_target_is_the_predicted_mask() -> None:
    network = unet("float64")
    image, _ = image_and_mask()
    result = trace(network, image, checks=0)
    with cp.no_grad():
        scores = network(cp.tensor(image[None])).numpy()[0]
    np.testing.assert_array_equal(result.label, np.argmax(scores, axis=0))
    np.testing.assert_array_equal(result.prediction, result.label)
    assert result.labelled_pixels == SIZE * SIZE


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (2, r"label must be a mask of shape \(16, 16\).*not the one class 2"),
        (np.zeros((8, 16), np.int64), r"the mask has shape \(8, 16\) but the network's"),
        (np.full((16, 16), 3), r"the mask has class 3, outside 0..2 \(and 255 to ignore"),
        (np.full((16, 16), IGNORE), "every pixel of the mask is 255"),
        (np.zeros((16, 16)), "must hold class indices"),
    ],
)
def test_a_bad_target_is_a_one_line_error(label: Any, message: str) -> None:
    image, _ = image_and_mask()
    with pytest.raises(ValueError, match=message):
        trace(unet("float64"), image, label, checks=0)


def test_a_classifier_takes_a_class_not_a_mask() -> None:
    from convprop.models import lenet5

    network = lenet5()
    image = np.zeros((1, 28, 28), np.float32)
    with pytest.raises(ValueError, match="label must be a class index"):
        trace(network, image, np.zeros((28, 28), np.int64), checks=0)
    with pytest.raises(ValueError, match="label 10 is not a class 0..9"):
        trace(network, image, 10, checks=0)


@pytest.fixture(scope="module")
def traced() -> Trace:
    image, mask = image_and_mask()
    return trace(unet("float64"), image, mask, checks=1, name="noise", classes=["a", "b", "c"])


def test_the_json_of_a_segmenter(traced: Trace) -> None:
    document = json.loads(traced.render("json"))
    assert list(document) == [
        "run",
        "image",
        "task",
        "label",
        "prediction",
        "probabilities",
        "loss",
        "layers",
    ]
    assert document["task"] == "segment"
    label = np.array(document["label"])
    assert label.shape == (SIZE, SIZE) and (label == IGNORE).sum() == 11
    np.testing.assert_array_equal(label, traced.label)
    prediction = np.array(document["prediction"])
    probabilities = np.array(document["probabilities"])
    assert prediction.shape == (SIZE, SIZE) and probabilities.shape == (CLASSES, SIZE, SIZE)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(prediction, probabilities.argmax(axis=0))
    assert document["layers"][-1]["name"] == "loss"
    assert np.shape(document["layers"][-1]["grad_input"]) == (CLASSES, SIZE, SIZE)


def test_the_text_and_markdown_of_a_segmenter(traced: Trace) -> None:
    text = traced.render("text")
    prediction = np.asarray(traced.prediction)
    counts = {name: int((prediction == i).sum()) for i, name in enumerate("abc")}
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    found = ", ".join(f"{name} {count}" for name, count in ranked if count)
    assert text.splitlines()[1].startswith(f"prediction {found} (pixels per class); label mask ")
    assert ", 11 ignored; pixel accuracy " in text
    assert f"the per-pixel cross-entropy over {SIZE * SIZE - 11} labelled pixels" in text
    assert "upsample.0 (ConvTranspose2d)" in text and "cat (cat)  4 + 4 channels = 8" in text
    markdown = traced.render("markdown")
    assert markdown.startswith("# explain model: noise\n\nprediction ")
    assert "| `upsample.0` | ConvTranspose2d |" in markdown and "| `loss` | loss |" in markdown


def test_kinks_that_cancel_in_the_sum_are_seen_pixel_by_pixel() -> None:
    """Two pixels' losses bend in opposite ways between the steps, so the one-sided sums
    agree and both are wrong: the check must call the entry underivable, not compare it."""
    from convprop.explain.trace import _quotient

    step, here = 1e-6, np.array([0.7, 1.3])
    bent_above = here + step * np.array([2.0, 1.0])
    bent_below = here - step * np.array([1.0, 2.0])
    assert _quotient(bent_above, here, bent_below, step, 2.5, 3.0) is None
    smooth_above, smooth_below = (
        here + step * np.array([2.0, 1.0]),
        here - step * np.array([2.0, 1.0]),
    )
    assert _quotient(smooth_above, here, smooth_below, step, 3.0, 3.0) == pytest.approx(3.0)
    # A kink below only: the side above has the analytic slope and is the one used.
    assert _quotient(smooth_above, here, bent_below, step, 3.0, 3.0) == pytest.approx(3.0)
