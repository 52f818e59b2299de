"""``use_algorithm("reference")`` across every op family at once: a small network that runs
convolution, batch norm, ReLU, interpolation, unfold/fold, linear and cross-entropy trains to
the same values and gradients by the notes' reference implementations as by the fast kernels,
and under the reference only reference implementations are counted."""

from __future__ import annotations

import numpy as np

import convprop as cp
import convprop.nn.functional as F
from convprop.ops.algorithm import kernels_used, use_algorithm


def test_every_family_runs_its_reference_and_agrees_with_the_fast_kernels() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 6, 6))
    arrays = {
        "conv": rng.standard_normal((4, 2, 3, 3)),
        "gamma": rng.standard_normal(4),
        "beta": rng.standard_normal(4),
        "linear": rng.standard_normal((5, 36 * 16)),
    }
    labels = cp.tensor(np.array([0, 4, 2]))

    def step() -> list[np.ndarray]:
        inputs = cp.tensor(x, requires_grad=True)
        p = {name: cp.tensor(value, requires_grad=True) for name, value in arrays.items()}
        hidden = F.conv2d(inputs, p["conv"])  # (3, 4, 4, 4)
        hidden = F.relu(F.batch_norm(hidden, None, None, p["gamma"], p["beta"], training=True))
        hidden = F.interpolate(hidden, scale_factor=1.5, mode="bilinear")  # (3, 4, 6, 6)
        hidden = F.fold(F.unfold(hidden, 3) * 0.5, (6, 6), 3)  # columns (3, 36, 16)
        logits = F.linear(F.unfold(hidden, 3).reshape(3, -1), p["linear"])
        loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
        loss.backward()
        return [loss.numpy(), inputs.grad.numpy()] + [p[name].grad.numpy() for name in arrays]

    with use_algorithm("reference"), kernels_used() as used:
        reference = step()
    families = {name.split(".")[0] for name in used}
    expected = {"conv", "batch_norm", "relu", "interpolate", "unfold", "linear", "cross_entropy"}
    assert expected <= families, families
    assert all(name.endswith(".reference") for name in used), used
    with use_algorithm("fast"), kernels_used() as used:
        fast = step()
    assert not any(name.endswith(".reference") for name in used), used
    for a, b in zip(reference, fast, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
