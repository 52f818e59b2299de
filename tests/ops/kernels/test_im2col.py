"""im2col and col2im (``convprop.ops.kernels.im2col``): every column path against the padded
input's windows, and the scatter against its definition and as the gather's adjoint."""

from __future__ import annotations

import numpy as np
import pytest

from convprop.ops.kernels import im2col

COLUMN_CASES = [
    ((2, 3, 5, 7), (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1))),  # the ResNet 3x3 layer
    ((1, 2, 6, 4), (2, 4), (1, 1), (1, 1), ((0, 1), (1, 2))),  # 'same' with even kernels
    ((2, 1, 4, 5), (3, 3), (1, 1), (2, 2), ((2, 2), (2, 2))),  # dilated, reads past borders
    ((1, 2, 3, 2), (5, 5), (1, 1), (1, 1), ((2, 2), (2, 2))),  # kernel wider than the image
    ((1, 1, 2, 3), (3, 3), (1, 1), (3, 1), ((1, 5), (1, 1))),  # more padding below
    ((1, 2, 4, 3), (1, 1), (1, 1), (1, 1), ((0, 0), (0, 0))),  # 1x1
    ((2, 2, 7, 8), (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1))),  # the strided 3x3 layers
    ((1, 2, 8, 9), (1, 1), (2, 3), (1, 1), ((0, 0), (0, 0))),  # 1x1 projections
    ((1, 1, 5, 6), (2, 3), (3, 2), (2, 1), ((3, 0), (0, 4))),  # stride > kernel, lopsided
    ((2, 3, 9, 8), (5, 5), (1, 1), (1, 1), ((0, 0), (0, 0))),  # LeNet-5's valid conv2
    ((1, 2, 9, 10), (3, 2), (2, 1), (2, 3), ((1, 0), (2, 2))),  # strided, dilated, padded
    ((2, 3, 9), (5,), (1,), (1,), ((0, 0),)),  # TDNN Conv1d
    ((1, 2, 10), (3,), (2,), (3,), ((4, 1),)),  # 1-D strided, dilated, padded
]


@pytest.mark.parametrize(("x_shape", "kernel", "stride", "dilation", "pads"), COLUMN_CASES)
def test_columns_equal_padded_windows(x_shape, kernel, stride, dilation, pads) -> None:
    """Every im2col path (the input itself, the row-wrapped flat image, the compiled gather,
    2-D and 1-D as one row) equals the windows of the zero-padded input, entry for entry:
    columns[n, c, k, o] = x_pad[n, c, o S + k D]."""
    spatial = len(kernel)
    x = np.arange(1, np.prod(x_shape) + 1, dtype=np.float64).reshape(x_shape)
    padded = np.pad(x, ((0, 0), (0, 0), *pads))
    out_size = tuple(
        (padded.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(spatial)
    )
    span = tuple(dilation[i] * (kernel[i] - 1) + 1 for i in range(spatial))
    windows = np.lib.stride_tricks.sliding_window_view(padded, span, tuple(range(2, 2 + spatial)))
    picked = (
        ...,
        *(slice(None, None, s) for s in stride),
        *(slice(None, None, d) for d in dilation),
    )
    windows = windows[picked]  # (N, C, *O, *K)
    taps_first = (0, 1, *range(2 + spatial, 2 + 2 * spatial), *range(2, 2 + spatial))
    expected = windows.transpose(taps_first).reshape(x_shape[0], 1, -1, np.prod(out_size))
    ours = im2col.im2col(x, kernel, stride, dilation, pads, out_size, groups=1)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "dilation", "pads"),
    [case for case in COLUMN_CASES if len(case[1]) == 2],
)
def test_scatter_is_the_adjoint_of_the_gather(x_shape, kernel, stride, dilation, pads) -> None:
    """<columns(x), v> = <x, scatter(v)> for every x and v: ``im2col.scatter_windows_2d`` is the
    adjoint of im2col with its padding (entries read from the padding are dropped). Checked
    directly too: scattering v equals adding each entry of v onto the sample it was read
    from, one ``np.add.at`` per tap, then removing the padding."""
    batch, channels = x_shape[:2]
    padded_shape = tuple(x_shape[2 + i] + sum(pads[i]) for i in range(2))
    out_size = tuple(
        (padded_shape[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)
    )
    rng = np.random.default_rng(3)
    values = rng.standard_normal((batch, channels, *kernel, *out_size))
    expected = np.zeros((batch, channels, *padded_shape))
    rows, cols = np.ogrid[: out_size[0], : out_size[1]]
    for p in range(kernel[0]):
        for q in range(kernel[1]):
            target = (rows * stride[0] + p * dilation[0], cols * stride[1] + q * dilation[1])
            np.add.at(expected, (..., *target), values[:, :, p, q])
    (top, bottom), (left, right) = pads
    expected = expected[..., top : padded_shape[0] - bottom, left : padded_shape[1] - right]
    ours = np.full(x_shape, np.nan)  # every entry must be written
    im2col.scatter_windows_2d(values, *stride, *dilation, top, left, ours)
    np.testing.assert_allclose(ours, expected, rtol=1e-14, atol=1e-14)
    x = rng.standard_normal(x_shape)
    columns = im2col.im2col(x, kernel, stride, dilation, pads, out_size, groups=1)
    assert np.isclose(np.vdot(columns, values), np.vdot(x, ours), rtol=1e-12)


@pytest.mark.parametrize("size", [(5,), (3, 4)])
def test_pointwise_columns_are_the_input_itself(size: tuple[int, ...]) -> None:
    """A 1x1 stride-1 unpadded convolution makes no im2col copy: its columns are a view of x."""
    spatial = len(size)
    x = np.arange(2 * 6 * np.prod(size), dtype=np.float32).reshape(2, 6, *size)
    ones = (1,) * spatial
    columns = im2col.im2col(x, ones, ones, ones, ((0, 0),) * spatial, size, groups=2)
    assert np.shares_memory(columns, x)
    np.testing.assert_array_equal(columns, x.reshape(2, 2, 3, -1))
    # Fewer outputs than samples (a transposed convolution's output_padding): a real copy.
    short = tuple(s - 1 for s in size)
    columns = im2col.im2col(x, ones, ones, ones, ((0, 0),) * spatial, short, groups=2)
    expected = x[(..., *(slice(0, s) for s in short))].reshape(2, 2, 3, -1)
    np.testing.assert_array_equal(columns, expected)
