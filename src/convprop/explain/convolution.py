"""``explain conv``: the notes' derivation of a convolution layer's backward pass, for any
configuration, computed with sympy and checked against the engine.

1. The forward pass is computed on symbols with the layer's definition (the same index
   arithmetic as the engine: zero padding, stride S, dilation D, groups)::

       h[n, f, o] = b[f] + sum_{c in group(f)} sum_k w[f, c, k] x_pad[n, c, o S + k D]

   (cross-correlation); in the notes' true-convolution convention (decks 000/001) the kernel is
   rotated by 180 degrees first, so deck 000's h11 = x11 w22 + x12 w21 + x21 w12 + x22 w11.
2. The backward pass is sympy's derivative of L = sum_o delta_o h_o with the local gradients
   delta = dL/dh held fixed (the chain rule), which gives dL/dx = sum delta * w,
   dL/dw = sum delta * x and dL/db = sum delta.
3. Separately, the notes' identities are built literally -- the full correlation of the
   zero-inserted, zero-padded delta map with the Rot180 kernel (channel axes swapped), the
   correlation of the padded input with delta, the sum of delta -- and sympy proves them equal
   to step 2 (``expand(lhs - rhs) == 0``).
4. Everything is evaluated at random numbers and compared with the engine's
   ``convprop.nn.functional.conv1d/conv2d`` forward and backward in float64.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from convprop.explain import convolution_text, notation, render, symbolic
from convprop.explain.base import (
    MAX_TERMS,
    Explanation,
    choice,
    positive_int,
    shape_text,
    sizes,
    too_large,
)
from convprop.explain.notation import Order
from convprop.explain.render import Label
from convprop.ops import geometry

CONVENTIONS = ("correlation", "convolution")
FUNC = "explain conv"


@dataclass(frozen=True)
class ConvConfig:
    """A convolution layer's geometry; ``pads`` are the resolved (before, after) paddings."""

    input_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Any  # as given (int, tuple, 'same', 'valid'), passed to the engine unchanged
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    in_channels: int = 1
    out_channels: int = 1
    batch: int = 1
    groups: int = 1
    convention: str = "correlation"
    bias: bool = True

    @property
    def spatial(self) -> int:
        return len(self.input_size)

    @property
    def padded_size(self) -> tuple[int, ...]:
        return geometry.padded_size(self.input_size, self.pads)

    @property
    def output_size(self) -> tuple[int, ...]:
        return tuple(
            geometry.conv_output_size(n, k, s, a + b, d)
            for n, k, s, (a, b), d in zip(
                self.input_size,
                self.kernel_size,
                self.stride,
                self.pads,
                self.dilation,
                strict=True,
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, (int, str)) else list(self.padding),
            "pads": [list(p) for p in self.pads],
            "dilation": list(self.dilation),
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "batch": self.batch,
            "groups": self.groups,
            "convention": self.convention,
            "bias": self.bias,
            "output_size": list(self.output_size),
        }

    def describe(self) -> str:
        parts = [
            f"{shape_text(self.input_size)} input",
            f"{shape_text(self.kernel_size)} kernel",
            f"stride {shape_text(self.stride)}",
            "padding "
            + (self.padding if isinstance(self.padding, str) else shape_text(self._pad_amounts())),
            f"dilation {shape_text(self.dilation)}",
        ]
        if self.in_channels > 1 or self.out_channels > 1:
            parts.append(f"{self.in_channels} -> {self.out_channels} channels")
        if self.groups > 1:
            parts.append(f"{self.groups} groups")
        if self.batch > 1:
            parts.append(f"minibatch of {self.batch}")
        return ", ".join(parts)

    def _pad_amounts(self) -> tuple[int, ...]:
        return tuple(a for a, _ in self.pads)


def _engine_forward(spatial: int) -> Any:
    from convprop.ops import conv as conv_ops

    return conv_ops.conv1d_forward if spatial == 1 else conv_ops.conv2d_forward


def resolve(
    func: str,
    input_size: Any,
    kernel_size: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    in_channels: Any = 1,
    out_channels: Any = 1,
    batch: Any = 1,
    groups: Any = 1,
    convention: str = "correlation",
    bias: bool = True,
) -> ConvConfig:
    """Check a configuration the way the engine does (its own errors) and resolve padding."""
    size = sizes(input_size, func, "input_size")
    spatial = len(size)
    kernel = sizes(kernel_size, func, "kernel_size", (1, spatial))
    kernel = kernel * spatial if len(kernel) == 1 else kernel
    channels = positive_int(in_channels, func, "in_channels")
    filters = positive_int(out_channels, func, "out_channels")
    samples = positive_int(batch, func, "batch")
    convention = choice(convention, CONVENTIONS, func, "convention")
    if isinstance(groups, (int, np.integer)) and not isinstance(groups, bool) and groups > 0:
        if channels % groups:
            raise ValueError(
                f"{func}: groups={groups} must divide in_channels={channels} (each group "
                f"convolves in_channels / groups input channels)"
            )
    # Refuse sizes that could not be explained before allocating anything for the engine.
    if samples * channels * int(np.prod(size)) > 4096 or int(np.prod(kernel)) > 1024:
        raise too_large(
            func,
            "the number of input values",
            samples * channels * int(np.prod(size)),
            4096,
            "choose a smaller input, kernel, batch or fewer channels",
        )
    # The engine's own validation (same messages as conv1d/conv2d): stride, padding, dilation,
    # groups, kernel larger than the padded input...
    in_per_group = channels // groups if isinstance(groups, int) and groups > 0 else channels
    _engine_forward(spatial)(
        np.zeros((samples, channels, *size)),
        np.zeros((filters, max(in_per_group, 1), *kernel)),
        np.zeros(filters) if bias else None,
        stride,
        padding,
        dilation,
        groups,
    )
    windows = geometry.conv_geometry(func, size, kernel, stride, padding, dilation, int(groups))
    config = ConvConfig(
        size,
        kernel,
        windows.stride,
        padding,
        windows.pads,
        windows.dilation,
        channels,
        filters,
        samples,
        windows.groups,
        convention,
        bool(bias),
    )
    _check_products(func, config)
    return config


def _check_products(func: str, config: ConvConfig) -> None:
    """Refuse a layer whose forward pass has too many products to show and prove."""
    products = (
        config.batch
        * config.out_channels
        * int(np.prod(config.output_size))
        * (config.in_channels // config.groups)
        * int(np.prod(config.kernel_size))
    )
    if products > MAX_TERMS:
        raise too_large(
            func,
            "the number of products in the forward pass",
            products,
            MAX_TERMS,
            "choose a smaller input or kernel, a larger stride, or fewer channels/samples",
        )


@dataclass(frozen=True)
class Identity:
    """One of the notes' identities: ``lhs`` (from differentiation) equals ``rhs`` (built from
    the identity's recipe), as proven by sympy."""

    name: str
    statement: str
    lhs: np.ndarray
    rhs: np.ndarray
    proven: bool


def _letter(flag: bool, letter: str) -> str | None:
    return letter if flag else None


class ConvExplanation(Explanation):
    """The symbolic forward and backward pass of one convolution layer.

    Attributes (NumPy object arrays of sympy expressions, engine layouts):

    * ``x`` (N, C, *input), ``w`` (F, C/G, *kernel) as the chosen convention names it (in the
      convolution convention the engine's kernel is ``Rot180(w)``), ``b`` (F,),
      ``delta`` (N, F, *output): the symbols;
    * ``outputs`` (output symbols h11, ...) and ``forward`` (their expressions);
    * ``grad_input``, ``grad_weight``, ``grad_bias``: the derivatives of L = sum delta * h;
    * ``identities``: the notes' identities, each with its right-hand side and sympy's proof;
    * ``zero_inserted_delta``, ``padded_delta``, ``rotated_kernel``, ``grad_padded_input``: the
      grids of the input-gradient identity.
    """

    kind = "conv"

    def __init__(self, config: ConvConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self.style = convolution_text.STYLES[config.spatial]
        self._build_symbols()
        self._forward()
        self._backward()
        self._identities()
        self._verification = self._verify()

    # ----------------------------------------------------------------------- construction
    def _build_symbols(self) -> None:
        cfg = self.config
        samples, channels, filters = cfg.batch, cfg.in_channels, cfg.out_channels
        in_per_group = channels // cfg.groups
        self.x = notation.symbol_array(
            "x",
            (samples, channels, *cfg.input_size),
            [_letter(samples > 1, "s"), _letter(channels > 1, "c")],
        )
        self.w = notation.symbol_array(
            "w",
            (filters, in_per_group, *cfg.kernel_size),
            [_letter(filters > 1, "f"), _letter(in_per_group > 1, "c")],
        )
        if cfg.bias:
            self.b = notation.symbol_array("b", (filters,), [_letter(filters > 1, "f")])
        else:
            self.b = symbolic.zeros((filters,))
        lead = [_letter(samples > 1, "s"), _letter(filters > 1, "f")]
        self.outputs = notation.symbol_array(
            self.style.out, (samples, filters, *cfg.output_size), lead
        )
        self.delta = notation.symbol_array(
            self.style.grad, (samples, filters, *cfg.output_size), lead
        )
        # What slides over the input in the engine's cross-correlation.
        if cfg.convention == "correlation":
            self.kernel = self.w
        else:
            self.kernel = symbolic.rot180(self.w, cfg.spatial)
        self.rotated_kernel = symbolic.rot180(self.w, cfg.spatial)

    def _group_channels(self, f: int) -> list[tuple[int, int]]:
        """(input channel, its index within the filter) pairs that filter ``f`` reads."""
        in_per_group = self.config.in_channels // self.config.groups
        out_per_group = self.config.out_channels // self.config.groups
        group = f // out_per_group
        return [(group * in_per_group + local, local) for local in range(in_per_group)]

    def _forward(self) -> None:
        cfg = self.config
        self.padded_input = symbolic.pad(self.x, cfg.pads)
        self.forward = symbolic.zeros(self.outputs.shape)
        for n, f in itertools.product(range(cfg.batch), range(cfg.out_channels)):
            total = symbolic.zeros(cfg.output_size) + self.b[f]
            for c, local in self._group_channels(f):
                total = total + symbolic.correlate(
                    self.padded_input[n, c],
                    self.kernel[f, local],
                    cfg.output_size,
                    cfg.stride,
                    cfg.dilation,
                )
            self.forward[n, f] = total

    def _backward(self) -> None:
        # The chain rule: dL/dv = sum_o delta_o dh_o/dv, the derivative of sum_o delta_o h_o
        # with the local gradients held fixed.
        self.loss = sympy.Add(
            *(d * h for d, h in zip(self.delta.ravel(), self.forward.ravel(), strict=True))
        )
        loss = symbolic.Polynomial(self.loss)

        def gradient(array: np.ndarray) -> np.ndarray:
            out = symbolic.zeros(array.shape)
            for index in np.ndindex(*array.shape):
                if isinstance(array[index], sympy.Symbol):
                    out[index] = loss.derivative(array[index])
            return out

        self.grad_input = gradient(self.x)
        self.grad_weight = gradient(self.w)
        self.grad_bias = gradient(self.b)

    def _identities(self) -> None:
        cfg = self.config
        input_rhs = self._input_identity_rhs()
        weight_rhs = self._weight_identity_rhs()
        bias_rhs = self._bias_identity_rhs()
        op = "correlation" if cfg.convention == "correlation" else "convolution"
        self.identities = [
            Identity(
                "input_gradient",
                f"dL/dx = full {op} of the zero-padded delta map with Rot180(w)",
                self.grad_input,
                input_rhs,
                symbolic.proven_equal(self.grad_input, input_rhs),
            ),
            Identity(
                "weight_gradient",
                "dL/dw = correlation of the (padded) input with the delta map"
                if cfg.convention == "correlation"
                else "dL/dw = Rot180(correlation of the (padded) input with the delta map)",
                self.grad_weight,
                weight_rhs,
                symbolic.proven_equal(self.grad_weight, weight_rhs),
            ),
        ]
        if cfg.bias:
            self.identities.append(
                Identity(
                    "bias_gradient",
                    "dL/db = sum of delta",
                    self.grad_bias,
                    bias_rhs,
                    symbolic.proven_equal(self.grad_bias, bias_rhs),
                )
            )

    def _input_identity_rhs(self) -> np.ndarray:
        """dL/dx built as the notes do, keeping its grids for the document."""
        cfg = self.config
        # dL/dx: zero insertion (stride), zero padding by D (K - 1) (and the samples no window
        # reached), full correlation with Rot180(w) (or full convolution in the convolution
        # convention), channel axes swapped, padding region removed.
        self.zero_inserted_delta = symbolic.zero_insert(self.delta, cfg.stride)
        inserted = self.zero_inserted_delta.shape[2:]
        full = [d * (k - 1) for k, d in zip(cfg.kernel_size, cfg.dilation, strict=True)]
        self.unreached = [
            p - e - u for p, e, u in zip(cfg.padded_size, full, inserted, strict=True)
        ]
        self.padded_delta = symbolic.pad(
            self.zero_inserted_delta,
            [(e, e + r) for e, r in zip(full, self.unreached, strict=True)],
        )
        grad_padded = symbolic.zeros((cfg.batch, cfg.in_channels, *cfg.padded_size))
        for n, f in itertools.product(range(cfg.batch), range(cfg.out_channels)):
            for c, local in self._group_channels(f):
                if cfg.convention == "correlation":
                    part = symbolic.correlate(
                        self.padded_delta[n, f],
                        self.rotated_kernel[f, local],
                        cfg.padded_size,
                        None,
                        cfg.dilation,
                    )
                else:
                    part = symbolic.convolve(
                        self.padded_delta[n, f],
                        self.rotated_kernel[f, local],
                        cfg.padded_size,
                        cfg.dilation,
                    )
                grad_padded[n, c] = grad_padded[n, c] + part
        self.grad_padded_input = grad_padded
        inner = (slice(None), slice(None)) + tuple(
            slice(a, a + size) for (a, _), size in zip(cfg.pads, cfg.input_size, strict=True)
        )
        return grad_padded[inner]

    def _weight_identity_rhs(self) -> np.ndarray:
        cfg = self.config
        spatial = cfg.spatial
        # dL/dw: correlation of the padded input with the (zero-inserted) delta, read at the
        # offsets k D; Rot180 of it in the convolution convention.
        weight_rhs = symbolic.zeros(self.w.shape)
        for f in range(cfg.out_channels):
            for c, local in self._group_channels(f):
                total = symbolic.zeros(cfg.kernel_size)
                for n in range(cfg.batch):
                    total = total + symbolic.correlate(
                        self.padded_input[n, c],
                        self.zero_inserted_delta[n, f],
                        cfg.kernel_size,
                        cfg.dilation,
                        None,
                    )
                weight_rhs[f, local] = (
                    total if cfg.convention == "correlation" else symbolic.rot180(total, spatial)
                )
        return weight_rhs

    def _bias_identity_rhs(self) -> np.ndarray:
        cfg = self.config
        bias_rhs = symbolic.zeros(self.b.shape)
        if cfg.bias:
            for f in range(cfg.out_channels):
                bias_rhs[f] = sympy.Add(*self.delta[:, f].ravel())
        return bias_rhs

    # ----------------------------------------------------------------------- verification
    def values(self) -> dict[sympy.Symbol, float]:
        """Random numbers (seeded) for every symbol: inputs, weights, bias, deltas."""
        rng = np.random.default_rng(self.seed)
        symbols = notation.symbols_of([self.x, self.w, self.delta])
        if self.config.bias:
            symbols += list(self.b.ravel())
        return {
            s: float(v) for s, v in zip(symbols, rng.standard_normal(len(symbols)), strict=True)
        }

    def engine(self, values: dict[sympy.Symbol, float]) -> dict[str, np.ndarray]:
        """The engine's forward and gradients (float64) at ``values``, in the explanation's
        layouts (the weight gradient as the convention names the kernel)."""
        from convprop import Tensor
        from convprop.nn import functional as F

        cfg = self.config

        def numbers(array: np.ndarray) -> np.ndarray:
            return np.vectorize(lambda s: values[s], otypes=[np.float64])(array)

        x = Tensor(numbers(self.x), requires_grad=True)
        weight = Tensor(numbers(self.kernel).copy(), requires_grad=True)
        bias = Tensor(numbers(self.b), requires_grad=True) if cfg.bias else None
        conv = F.conv1d if cfg.spatial == 1 else F.conv2d
        out = conv(x, weight, bias, cfg.stride, cfg.padding, cfg.dilation, cfg.groups)
        out.backward(numbers(self.delta))
        assert x.grad is not None and weight.grad is not None
        grad_weight = weight.grad.numpy()
        if cfg.convention == "convolution":
            grad_weight = symbolic.rot180(grad_weight, cfg.spatial)
        results = {
            "forward": out.numpy(),
            "grad_input": x.grad.numpy(),
            "grad_weight": np.ascontiguousarray(grad_weight),
        }
        if bias is not None:
            assert bias.grad is not None
            results["grad_bias"] = bias.grad.numpy()
        return results

    @property
    def engine_name(self) -> str:
        name = "conv1d" if self.config.spatial == 1 else "conv2d"
        return f"the engine's convprop.nn.functional.{name} forward and backward"

    def _verify(self) -> render.Verification:
        values = self.values()
        engine = self.engine(values)
        symbolic_values = {
            "forward": self.forward,
            "grad_input": self.grad_input,
            "grad_weight": self.grad_weight,
            "grad_bias": self.grad_bias,
        }
        details = {
            key: max_diff(symbolic.evaluate(symbolic_values[key], values), engine[key])
            for key in engine
        }
        names = ", ".join(self._grad_names())
        return render.Verification(
            f"the symbolic forward pass and {names}",
            self.engine_name,
            max(details.values()),
            seed=self.seed,
            details=details,
        )

    @property
    def verification(self) -> render.Verification:
        return self._verification

    # ----------------------------------------------------------------------- labels
    def _grad_names(self) -> list[str]:
        if self.style.short:
            names = ["dx", "dw"]
            return names + (["db"] if self.config.bias else [])
        return ["dL/dx", "dL/dw"] + (["dL/db"] if self.config.bias else [])

    def grad_label(self, symbol: sympy.Symbol) -> Label:
        return render.grad_label(symbol, short=self.style.short)

    def padding_mask(self) -> np.ndarray:
        """True on the padding region of the padded input."""
        size = self.config.padded_size
        mask = np.zeros(size, dtype=bool)
        for axis, ((before, after), n) in enumerate(zip(self.config.pads, size, strict=True)):
            index: list[Any] = [slice(None)] * len(size)
            index[axis] = slice(0, before)
            mask[tuple(index)] = True
            index[axis] = slice(n - after, n)
            mask[tuple(index)] = True
        return mask

    # ----------------------------------------------------------------------- document
    def blocks(self) -> list[render.Block]:
        return convolution_text.document(self)

    # ----------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        st = self.style

        def mapping(symbols: np.ndarray, exprs: np.ndarray, order: Order, grad: bool) -> dict:
            out = {}
            for s, e in zip(symbols.ravel(), exprs.ravel(), strict=True):
                if isinstance(s, sympy.Symbol):
                    key = self.grad_label(s).text if grad else s.name
                    out[key] = notation.source(e, order)
            return out

        def grid(array: np.ndarray, order: Order = notation.NATURAL) -> Any:
            return np.vectorize(lambda e: notation.source(e, order), otypes=[object])(
                array
            ).tolist()

        identities = []
        for identity in self.identities:
            symbols = {
                "input_gradient": self.x,
                "weight_gradient": self.w,
                "bias_gradient": self.b,
            }[identity.name]
            order = {
                "input_gradient": st.grad_input,
                "weight_gradient": st.grad_weight,
                "bias_gradient": st.bias,
            }[identity.name]
            entry = {
                "name": identity.name,
                "statement": identity.statement,
                "proven": identity.proven,
                "rhs": mapping(symbols, identity.rhs, order, True),
            }
            if identity.name == "input_gradient":
                entry["zero_inserted_delta"] = grid(self.zero_inserted_delta)
                entry["padded_delta"] = grid(self.padded_delta)
                entry["rotated_kernel"] = grid(self.rotated_kernel)
                entry["padded_input_gradient"] = grid(self.grad_padded_input, st.grad_input)
            identities.append(entry)
        return {
            "kind": "conv",
            "config": self.config.to_dict(),
            "symbols": {
                "input": [s.name for s in self.x.ravel()],
                "weight": [s.name for s in self.w.ravel()],
                "bias": [s.name for s in self.b.ravel() if isinstance(s, sympy.Symbol)],
                "output": [s.name for s in self.outputs.ravel()],
                "local_gradient": [s.name for s in self.delta.ravel()],
            },
            "kernel_sliding_in_forward": grid(self.kernel),
            "forward": mapping(self.outputs, self.forward, st.forward, False),
            "loss": notation.source(self.loss),
            "backward": {
                "input": mapping(self.x, self.grad_input, st.grad_input, True),
                "weight": mapping(self.w, self.grad_weight, st.grad_weight, True),
                "bias": mapping(self.b, self.grad_bias, st.bias, True),
            },
            "identities": identities,
            "verification": self.verification.to_dict(),
        }


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise RuntimeError(f"explain: shape mismatch {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def conv(
    input_size: int | Sequence[int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    in_channels: int = 1,
    out_channels: int = 1,
    batch: int = 1,
    groups: int = 1,
    convention: str = "correlation",
    bias: bool = True,
    seed: int = 0,
) -> ConvExplanation:
    """Explain one convolution layer symbolically (see the module docstring).

    ``input_size`` (3, 3) is 2-D, 4 or (4,) is 1-D; the other arguments are those of
    ``conv2d``/``conv1d`` (padding may be 'same' or 'valid'). ``convention`` 'convolution'
    names the kernel as decks 000/001 do (rotated by 180 degrees before it slides). ``seed``
    draws the random numbers of the verification.
    """
    config = resolve(
        FUNC,
        input_size,
        kernel_size,
        stride,
        padding,
        dilation,
        in_channels,
        out_channels,
        batch,
        groups,
        convention,
        bias,
    )
    return ConvExplanation(config, seed)
