"""Point-wise activations, softmax and dropout, each a forward/backward pair.

Deck 004, "Backpropagating through the activation": the maps are y(l, m, x, y) = f(z(l, m, x, y))
and the backward pass is "simple component-wise computation",

    dDiv/dz(l, m, x, y) = dDiv/dy(l, m, x, y) * f'(z(l, m, x, y)),

the notes' local gradient delta. Deck 002 writes the same layer as Y = phi(X) with
(dL/dX)^T = [phi'(x_1) dL/dy_1, ..., phi'(x_m) dL/dy_m]^T. So every point-wise backward below is
``grad_out * phi'(v)``; each docstring states phi'(v), with PyTorch's value at the kinks.

Softmax couples the entries along one axis, so its Jacobian is not diagonal:
dy_i/dz_j = y_i (delta_ij - y_j), which gives dL/dz = y * (dL/dy - sum_j dL/dy_j y_j).

Dropout (inverted dropout) multiplies by a random mask that keeps each entry with probability
1 - p and scales the kept ones by 1 / (1 - p); its backward multiplies by the same mask.

ReLU, in every CNN of the zoo, also has fast passes (``convprop.ops.kernels.relu``: blocks of
samples on every core, a compiled one-pass backward) beside ``reference_relu_forward`` and
``reference_relu_backward``, chosen by ``plan_relu_forward``/``plan_relu_backward``. Every
other op here has one implementation, the formula as written, which is its own reference:
``convprop.ops.use_algorithm("reference")`` changes nothing for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from convprop.ops import algorithm
from convprop.ops.checks import check_float
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.kernels import relu as relu_kernels

# ----------------------------------------------------------------------------------------- erf
#
# NumPy has no erf, and a Python loop over math.erf is far too slow for a layer. Two pieces,
# both accurate to a couple of float64 ulps (tests/ops/test_activation.py checks 1e-14 relative
# against math.erf):
#
# * |x| < 1: the Maclaurin series erf(x) = 2/sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1)),
#   19 terms (the 19th is below 1e-17 at |x| = 1, and the alternating terms cancel little there).
# * 1 <= |x| < 6: erf(x) = 1 - exp(-x^2) erfcx(x), where the scaled complementary error function
#   erfcx(x) = exp(x^2) erfc(x) is smooth and slowly varying, so a Chebyshev series of degree 28
#   in u = (2|x| - 7) / 5 represents it to float64 precision. Beyond 6, erf(x) rounds to +-1.
#
# The Chebyshev coefficients were computed with mpmath at 50 significant digits from erfcx at
# the 29 Chebyshev nodes of the first kind (c_j = 2/n sum_k f(u_k) T_j(u_k), c_0 halved) and
# rounded to float64; the test suite recomputes them. Computing them here in float64 instead
# would add rounding noise of ~3e-16 to every coefficient, which sums to ~1e-14 at u = -1.

_ERF_SERIES = [(-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(19)]
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_ERFCX_SPLIT, _ERFCX_END = 1.0, 6.0
_ERFCX_CHEBYSHEV = [
    0.20196598791223083,
    -0.147884835533987,
    0.05188222158351389,
    -0.017525709964867527,
    0.005721802417478219,
    -0.0018109803028142997,
    0.0005570714353927344,
    -0.00016689473052528832,
    4.878565911493746e-05,
    -1.3935932859822488e-05,
    3.895514595190115e-06,
    -1.0668392337070025e-06,
    2.865502572057316e-07,
    -7.555861081756622e-08,
    1.957586342968354e-08,
    -4.987110132992565e-09,
    1.2501871239431183e-09,
    -3.0858852312872416e-10,
    7.504484747602063e-11,
    -1.7990193064431427e-11,
    4.253478301217652e-12,
    -9.923156075211234e-13,
    2.2852946881888867e-13,
    -5.1975450866167244e-14,
    1.1678400541510938e-14,
    -2.5932901330272067e-15,
    5.692635243339303e-16,
    -1.2335300698913424e-16,
    2.5358417099784882e-17,
]


def erf(x: np.ndarray) -> np.ndarray:
    """The error function erf(x) = 2/sqrt(pi) int_0^x exp(-t^2) dt, element-wise, in x's dtype.

    The coefficients are Python floats, so float32 inputs are computed in float32.
    """
    x = np.asarray(x)
    magnitude = np.abs(x)
    # The series runs over every element (clipped to |x| <= 1, most of a layer's inputs), and
    # the few large ones are overwritten after: cheaper than splitting the array with boolean
    # masks, whose random branches make NumPy's where/compress slower than the arithmetic.
    small = np.minimum(magnitude, _ERFCX_SPLIT)
    square = small * small
    result = np.full_like(small, _ERF_SERIES[-1])
    for coefficient in reversed(_ERF_SERIES[:-1]):
        result *= square
        result += coefficient
    result *= small
    result *= _TWO_OVER_SQRT_PI

    large_index = np.flatnonzero(magnitude >= _ERFCX_SPLIT)
    if large_index.size:
        # +-inf lands on the end of the interval, where erf rounds to +-1.
        large = np.minimum(magnitude.reshape(-1).take(large_index), _ERFCX_END)
        u = (2.0 * large - (_ERFCX_SPLIT + _ERFCX_END)) / (_ERFCX_END - _ERFCX_SPLIT)
        erfcx = _chebyshev_series(u, _ERFCX_CHEBYSHEV)
        result.reshape(-1).put(large_index, 1.0 - np.exp(-large * large) * erfcx)
    signed: np.ndarray = np.copysign(result, x, out=result)
    return signed


def _chebyshev_series(u: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """sum_j c_j T_j(u) by Clenshaw's recurrence b_j = 2u b_(j+1) - b_(j+2) + c_j, in place."""
    twice_u = 2.0 * u
    b1, b2, spare = np.zeros_like(u), np.zeros_like(u), np.empty_like(u)
    for coefficient in reversed(coefficients[1:]):
        np.multiply(twice_u, b1, out=spare)
        spare -= b2
        spare += coefficient
        b1, b2, spare = spare, b1, b2
    b1 *= u
    b1 -= b2
    b1 += coefficients[0]
    return b1


# ---------------------------------------------------------------------------------- point-wise
def _check_input(x: np.ndarray, func: str) -> None:
    check_float(x, func, "input")


# ReLU has fast passes (``convprop.ops.kernels.relu``) beside the rule as the notes write it;
# every other point-wise activation below has one implementation, the formula itself, which is
# its own reference.
def reference_relu_forward(z: np.ndarray) -> np.ndarray:
    """y = f(z) = max(z, 0)."""
    out: np.ndarray = np.maximum(z, 0)
    return out


def reference_relu_backward(grad_out: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Deck 004's point-wise rule dL/dz = dL/dy f'(z), f'(z) = 1 for z > 0 and 0 for z <= 0,
    read off the output y = relu(z) (positive exactly where z is).

    Written as PyTorch's threshold_backward, the selection "0 where z <= 0, else delta", rather
    than a product with the 0/1 mask: a NaN z passes its delta, and an infinite delta at a zero
    slope gives 0 rather than inf * 0 = NaN.
    """
    selected: np.ndarray = np.where(out <= 0, 0.0, grad_out)
    return selected.astype(np.result_type(grad_out, out), copy=False)


RELU_FORWARD_KERNELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "reference": reference_relu_forward,
    "blocked": relu_kernels.forward,
}
RELU_BACKWARD_KERNELS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "reference": reference_relu_backward,
    "compiled": relu_kernels.backward,
}


def plan_relu_forward() -> str:
    """max(z, 0) in blocks of samples on every core, or the reference."""
    return "reference" if algorithm.reference() else "blocked"


def plan_relu_backward() -> str:
    """The compiled one-pass mask, or the reference."""
    return "reference" if algorithm.reference() else "compiled"


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """relu(v) = max(v, 0)."""
    _check_input(x, "relu")
    kernel = plan_relu_forward()
    algorithm.ran(f"relu.forward.{kernel}")
    out = RELU_FORWARD_KERNELS[kernel](x)
    return out, out


def relu_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """phi'(v) = 1 for v > 0, 0 for v <= 0 (0 at the kink, as PyTorch): dL/dv = 0 where the
    output y <= 0, else dL/dy (``reference_relu_backward``; ``plan_relu_backward`` picks)."""
    out = saved
    if grad_out.shape != out.shape:
        grad_out = np.broadcast_to(grad_out, out.shape)
    kernel = plan_relu_backward()
    algorithm.ran(f"relu.backward.{kernel}")
    return (RELU_BACKWARD_KERNELS[kernel](grad_out, out),)


def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> tuple[np.ndarray, Any]:
    """leaky_relu(v) = v for v > 0, negative_slope * v otherwise."""
    _check_input(x, "leaky_relu")
    # max(v, 0) + slope min(v, 0): exactly one of the two terms is non-zero.
    out = np.maximum(x, 0)
    out += negative_slope * np.minimum(x, 0)
    return out, (x > 0, negative_slope)


def leaky_relu_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """phi'(v) = 1 for v > 0, negative_slope for v <= 0 (negative_slope at the kink, as PyTorch)."""
    positive, negative_slope = saved
    grad = grad_out * positive
    grad += (negative_slope * grad_out) * ~positive
    return (grad,)


def elu_forward(x: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, Any]:
    """elu(v) = v for v > 0, alpha (exp(v) - 1) otherwise."""
    _check_input(x, "elu")
    # max(v, 0) + alpha expm1(min(v, 0)): the second term is exactly 0 for v > 0, and expm1
    # keeps alpha (exp(v) - 1) accurate for small |v|.
    out = np.maximum(x, 0)
    out += alpha * np.expm1(np.minimum(x, 0))
    return out, (x, alpha)


def elu_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """phi'(v) = 1 for v > 0, alpha exp(v) for v <= 0 (alpha at the kink, as PyTorch)."""
    x, alpha = saved
    positive = ~(x <= 0)  # a NaN input takes the slope-1 branch, as PyTorch
    local = alpha * np.exp(np.fmin(x, 0))  # fmin: a NaN input must not poison the mask below
    local *= ~positive
    local += positive
    return (grad_out * local,)


_GELU_APPROXIMATIONS = ("none", "tanh")
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_CUBIC = 0.044715


def gelu_forward(x: np.ndarray, approximate: str = "none") -> tuple[np.ndarray, Any]:
    """gelu(v) = v Phi(v), Phi the standard normal CDF: 0.5 (1 + erf(v / sqrt(2))).

    With ``approximate='tanh'``: 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))).
    """
    _check_input(x, "gelu")
    if approximate not in _GELU_APPROXIMATIONS:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if approximate == "tanh":
        with np.errstate(invalid="ignore"):  # inf - inf and -inf * 0 give NaN, as PyTorch
            inner_tanh = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x))
            return 0.5 * x * (1.0 + inner_tanh), (x, approximate, inner_tanh)
    cdf = 0.5 * (1.0 + erf(x * math.sqrt(0.5)))
    with np.errstate(invalid="ignore"):  # -inf * 0 = NaN, as PyTorch
        return x * cdf, (x, approximate, cdf)


def gelu_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """phi'(v) = Phi(v) + v N(v), N(v) = exp(-v^2 / 2) / sqrt(2 pi) the normal density.

    With ``approximate='tanh'``, t = tanh(k (v + 0.044715 v^3)), k = sqrt(2/pi):
    phi'(v) = 0.5 (1 + t) + 0.5 v (1 - t^2) k (1 + 3 * 0.044715 v^2).
    """
    x, approximate, cached = saved
    if approximate == "tanh":
        inner_tanh = cached
        inner_slope = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x * x)
        with np.errstate(invalid="ignore"):
            local = 0.5 * (1.0 + inner_tanh) + 0.5 * x * (1.0 - inner_tanh**2) * inner_slope
    else:
        cdf = cached
        with np.errstate(invalid="ignore"):
            local = cdf + x * (_INV_SQRT_2PI * np.exp(-0.5 * x * x))
    return (grad_out * local,)


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """sigmoid(v) = 1 / (1 + exp(-v))."""
    _check_input(x, "sigmoid")
    # exp(-v) overflows to inf for v < -709 (float64); 1 / inf = 0 is then the right answer.
    with np.errstate(over="ignore"):
        out = 1.0 / (1.0 + np.exp(-x))
    return out, out


def sigmoid_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """phi'(v) = sigmoid(v) (1 - sigmoid(v)), from the saved output y: y (1 - y)."""
    out = saved
    return (grad_out * (1.0 - out) * out,)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """tanh(v)."""
    _check_input(x, "tanh")
    out = np.tanh(x)
    return out, out


def tanh_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """phi'(v) = 1 - tanh(v)^2, from the saved output y: 1 - y^2."""
    out = saved
    return (grad_out * (1.0 - out * out),)


def silu_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """silu(v) = v sigmoid(v) (also called swish)."""
    _check_input(x, "silu")
    with np.errstate(over="ignore", invalid="ignore"):  # -inf * 0 = NaN, as PyTorch
        sigmoid = 1.0 / (1.0 + np.exp(-x))
        return x * sigmoid, (x, sigmoid)


def silu_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """phi'(v) = s (1 + v (1 - s)) with s = sigmoid(v)."""
    x, sigmoid = saved
    with np.errstate(invalid="ignore"):
        return (grad_out * sigmoid * (1.0 + x * (1.0 - sigmoid)),)


# ------------------------------------------------------------------------------------- softmax
def _softmax_axis(x: np.ndarray, dim: int | None, func: str) -> int:
    if dim is None:
        raise ValueError(
            f"{func}: dim must be given (the axis whose entries are normalised); convprop does "
            "not copy PyTorch's deprecated implicit choice of dim"
        )
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{func}: dim must be an int, got {dim!r}")
    rank = max(x.ndim, 1)
    if not -rank <= dim < rank:
        raise ValueError(
            f"{func}: dim must be in [{-rank}, {rank - 1}] for an input of shape "
            f"{tuple(x.shape)}, got {dim}"
        )
    return int(dim) % rank


def _shifted(x: np.ndarray, axis: int) -> np.ndarray:
    """x minus its maximum along ``axis``, so that exp() cannot overflow (softmax is unchanged)."""
    maximum = x.max(axis=axis, keepdims=True)
    # A slice holding +inf, or only -inf, gives inf - inf = NaN, as PyTorch's result there;
    # -1e308 - 1e308 overflows to -inf, whose exp() is the correct 0.
    with np.errstate(invalid="ignore", over="ignore"):
        shifted: np.ndarray = x - maximum
    return shifted


def softmax_forward(x: np.ndarray, dim: int | None) -> tuple[np.ndarray, Any]:
    """y_i = exp(z_i) / sum_j exp(z_j) along ``dim``."""
    check_float(x, "softmax", "input")
    axis = _softmax_axis(x, dim, "softmax")
    if x.size == 0:
        return x.copy(), (x.copy(), axis)
    view = x.reshape(1) if x.ndim == 0 else x
    exps = np.exp(_shifted(view, axis))
    exps /= exps.sum(axis=axis, keepdims=True)
    out = exps.reshape(x.shape)
    return out, (out, axis)


def softmax_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dz = y * (dL/dy - sum_j dL/dy_j y_j).

    From the Jacobian dy_i/dz_j = y_i (delta_ij - y_j).
    """
    out, axis = saved
    if out.ndim == 0:
        return (np.zeros_like(grad_out),)
    weighted = (grad_out * out).sum(axis=axis, keepdims=True)
    return (out * (grad_out - weighted),)


def log_softmax_forward(x: np.ndarray, dim: int | None) -> tuple[np.ndarray, Any]:
    """y_i = z_i - log sum_j exp(z_j) along ``dim`` (log-sum-exp after subtracting the maximum)."""
    check_float(x, "log_softmax", "input")
    axis = _softmax_axis(x, dim, "log_softmax")
    if x.size == 0:
        return x.copy(), (x.copy(), axis)
    view = x.reshape(1) if x.ndim == 0 else x
    shifted = _shifted(view, axis)
    with np.errstate(divide="ignore"):
        shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    out = shifted.reshape(x.shape)
    return out, (out, axis)


def log_softmax_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dz = dL/dy - softmax(z) * sum_j dL/dy_j, with softmax(z) = exp(y)."""
    out, axis = saved
    if out.ndim == 0:
        return (np.zeros_like(grad_out),)
    return (grad_out - np.exp(out) * grad_out.sum(axis=axis, keepdims=True),)


# ------------------------------------------------------------------------------------- dropout
def check_dropout_probability(p: float, func: str = "dropout") -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"{func}: p must be a float, got {p!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{func}: p is a dropout probability and must be in [0, 1], got {p}")


def dropout_forward(
    x: np.ndarray,
    p: float = 0.5,
    training: bool = True,
    generator: np.random.Generator | None = None,
    mask_shape: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, Any]:
    """Inverted dropout: y = x * m / (1 - p), m_i ~ Bernoulli(1 - p) drawn from ``generator``.

    ``training=False`` (or p = 0) is the identity; p = 1 zeroes everything. The mask is drawn
    from ``generator``, by default :func:`convprop.random.default_generator`, so
    ``convprop.manual_seed`` makes it reproducible. ``mask_shape`` (default: x's shape) is the
    shape of the mask broadcast over x: (N, C, 1, 1) drops whole channels (dropout2d).
    """
    check_float(x, "dropout", "input")
    check_dropout_probability(p)
    if mask_shape is None:
        mask_shape = x.shape
    elif np.broadcast_shapes(mask_shape, x.shape) != x.shape:
        raise ValueError(
            f"dropout: mask_shape {tuple(mask_shape)} does not broadcast to the input's shape "
            f"{tuple(x.shape)}"
        )
    if not training or p == 0:
        return x.copy(), None
    if p == 1:
        scaled_mask = np.zeros(mask_shape, dtype=x.dtype)
    else:
        if generator is None:
            from convprop.random import default_generator

            generator = default_generator()
        uniform_dtype = np.float32 if x.dtype == np.float32 else np.float64
        keep = generator.random(mask_shape, dtype=uniform_dtype) >= p
        scaled_mask = keep * np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
    return x * scaled_mask, scaled_mask


def dropout_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx = dL/dy * m / (1 - p): the same mask and scale as the forward pass."""
    scaled_mask = saved
    if scaled_mask is None:
        return (grad_out,)
    return (grad_out * scaled_mask,)


dropout = OpPair("dropout", dropout_forward, dropout_backward)
elu = OpPair("elu", elu_forward, elu_backward)
gelu = OpPair("gelu", gelu_forward, gelu_backward)
leaky_relu = OpPair("leaky_relu", leaky_relu_forward, leaky_relu_backward)
log_softmax = OpPair("log_softmax", log_softmax_forward, log_softmax_backward)
relu = OpPair("relu", relu_forward, relu_backward)
sigmoid = OpPair("sigmoid", sigmoid_forward, sigmoid_backward)
silu = OpPair("silu", silu_forward, silu_backward)
softmax = OpPair("softmax", softmax_forward, softmax_backward)
tanh = OpPair("tanh", tanh_forward, tanh_backward)
