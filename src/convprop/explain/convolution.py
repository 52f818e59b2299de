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

from convprop.explain import notation, render, symbolic
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
from convprop.explain.render import Equations, Formula, Grid, Heading, Label, Para

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
        return tuple(n + a + b for n, (a, b) in zip(self.input_size, self.pads, strict=True))

    @property
    def output_size(self) -> tuple[int, ...]:
        from convprop.ops.windows import output_size

        return tuple(
            output_size(n, k, s, a + b, d)
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
    from convprop.ops._util import to_tuple

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
    groups = int(groups)
    strides = to_tuple(stride, spatial, func, "stride")
    dilations = to_tuple(dilation, spatial, func, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * spatial
        else:  # 'same': PyTorch's rule, the odd zero of an even effective kernel goes after
            effective = [d * (k - 1) for k, d in zip(kernel, dilations, strict=True)]
            pads = tuple((e // 2, e - e // 2) for e in effective)
    else:
        pads = tuple((p, p) for p in to_tuple(padding, spatial, func, "padding"))
    config = ConvConfig(
        size,
        kernel,
        strides,
        padding,
        pads,
        dilations,
        channels,
        filters,
        samples,
        groups,
        convention,
        bool(bias),
    )
    products = (
        samples
        * filters
        * int(np.prod(config.output_size))
        * (channels // groups)
        * int(np.prod(kernel))
    )
    if products > MAX_TERMS:
        raise too_large(
            func,
            "the number of products in the forward pass",
            products,
            MAX_TERMS,
            "choose a smaller input or kernel, a larger stride, or fewer channels/samples",
        )
    return config


@dataclass(frozen=True)
class Identity:
    """One of the notes' identities: ``lhs`` (from differentiation) equals ``rhs`` (built from
    the identity's recipe), as proven by sympy."""

    name: str
    statement: str
    lhs: np.ndarray
    rhs: np.ndarray
    proven: bool


@dataclass(frozen=True)
class _Style:
    out: str
    grad: str
    short: bool
    forward: Order
    grad_input: Order
    grad_weight: Order
    bias: Order

    @property
    def md_delta(self) -> str:
        """The local gradient in LaTeX: deck 001's dy, deck 000's delta."""
        return "dy" if self.short else r"\delta"

    def grad_text(self, var: str) -> str:
        return f"d{var}" if self.short else f"dL/d{var}"

    def grad_md(self, var: str) -> str:
        return f"d{var}" if self.short else rf"\partial L / \partial {var}"


_STYLES = {
    # Deck 001 (1-D): y1 = w1 x1 + w2 x2 + b, dx2 = w2 dy1 + w1 dy2, dw1 = x1 dy1 + ...
    1: _Style(
        "y",
        "dy",
        True,
        Order(("w", "x"), ("x", "w")),
        Order(("w", "dy"), ("dy", "w")),
        Order(("x", "dy"), ("x", "dy")),
        Order(("dy",)),
    ),
    # Deck 000 (2-D): h11 = x11 w22 + ..., dL/dx12 = delta11 w21 + delta12 w22
    2: _Style(
        "h",
        "delta",
        False,
        Order(("x", "w")),
        Order(("delta", "w")),
        Order(("delta", "x")),
        Order(("delta",)),
    ),
}


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
        self.style = _STYLES[config.spatial]
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
        spatial = cfg.spatial
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
        input_rhs = grad_padded[inner]

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
        bias_rhs = symbolic.zeros(self.b.shape)
        if cfg.bias:
            for f in range(cfg.out_channels):
                bias_rhs[f] = sympy.Add(*self.delta[:, f].ravel())

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

    def _channel_title(
        self, name: str, index: tuple[int, ...], letters: Sequence[str], counts: Sequence[int]
    ) -> str:
        words = {"s": "sample", "c": "channel", "f": "filter"}
        parts = [
            f"{words[letter]} {i + 1}"
            for letter, i, n in zip(letters, index, counts, strict=True)
            if n > 1
        ]
        return name + (f" ({', '.join(parts)})" if parts else "")

    def _per_map(
        self,
        array: np.ndarray,
        name: str,
        letters: Sequence[str],
        counts: Sequence[int],
        order: Order = notation.NATURAL,
        shaded: np.ndarray | None = None,
        note: str | None = None,
    ) -> list[Grid]:
        grids = []
        for index in np.ndindex(*array.shape[:2]):
            grids.append(
                Grid(
                    self._channel_title(name, index, letters, counts),
                    array[index],
                    order,
                    shaded,
                    note,
                )
            )
        return grids

    # ----------------------------------------------------------------------- document
    def blocks(self) -> list[render.Block]:
        cfg = self.config
        st = self.style
        counts_x = (cfg.batch, cfg.in_channels)
        counts_w = (cfg.out_channels, cfg.in_channels // cfg.groups)
        counts_d = (cfg.batch, cfg.out_channels)
        conv_conv = cfg.convention == "convolution"
        d = "delta" if not st.short else "dy"
        out: list[render.Block] = [
            Heading(f"Convolution: {cfg.describe()}", 1),
            Para(_convention_text(cfg.convention), _convention_markdown(cfg.convention)),
            Heading("Forward pass"),
        ]
        out += self._per_map(self.x, "input x", "sc", counts_x)
        out += self._per_map(self.w, "kernel w", "fc", counts_w)
        if conv_conv:
            out += self._per_map(
                self.kernel, "Rot180(w): the kernel that slides over the input", "fc", counts_w
            )
        out += _forward_formula(cfg, st)
        if cfg.in_channels > 1 or cfg.out_channels > 1 or cfg.batch > 1:
            out.append(Para(*_multichannel_forward(cfg)))
        out.append(
            Equations(
                [
                    (render.label(o), [e])
                    for o, e in zip(self.outputs.ravel(), self.forward.ravel(), strict=True)
                ],
                st.forward,
            )
        )

        out.append(Heading("Backward pass: the input gradient"))
        out.append(Para(*_chain_rule_text(st)))
        if cfg.spatial == 2:
            out += self._per_map(self.grad_input, "dL/dx", "sc", counts_x, st.grad_input)
        else:
            out.append(self._equations(self.x, self.grad_input, st.grad_input))
        out += self._input_identity_blocks(counts_x, counts_w, counts_d)
        out.append(Heading("Backward pass: the weight gradient"))
        if cfg.spatial == 2:
            out += self._per_map(self.grad_weight, "dL/dw", "fc", counts_w, st.grad_weight)
        else:
            out.append(self._equations(self.w, self.grad_weight, st.grad_weight))
        out.append(Para(*_weight_identity_text(cfg, st)))
        out.append(_proof_para(self.identities[1]))
        if cfg.bias:
            out.append(Heading("Backward pass: the bias gradient"))
            out.append(self._equations(self.b, self.grad_bias, st.bias))
            shared = " and sample" if cfg.batch > 1 else ""
            out.append(
                Para(
                    f"The bias is shared by every output position{shared}"
                    f", so its gradient is the sum of the local gradients: "
                    f"{'db' if st.short else 'dL/db'} = sum of {d}.",
                    "The bias is shared by every output position"
                    f"{' and sample' if cfg.batch > 1 else ''}, so its gradient is the sum of the "
                    f"local gradients: ${st.grad_md('b')} = \\sum {st.md_delta}$.",
                )
            )
            out.append(_proof_para(self.identities[2]))
        if cfg.in_channels > 1 or cfg.out_channels > 1 or cfg.batch > 1:
            out.append(Heading("Several channels and samples (deck 002)"))
            out.append(Para(*_multichannel_backward(cfg)))
        note = _deck_note(cfg)
        if note:
            out.append(Heading("About the lecture notes"))
            out.append(Para(*note))
        out.append(self.verification)
        return out

    def _equations(self, symbols: np.ndarray, grads: np.ndarray, order: Order) -> Equations:
        return Equations(
            [
                (self.grad_label(s), [g])
                for s, g in zip(symbols.ravel(), grads.ravel(), strict=True)
                if isinstance(s, sympy.Symbol)
            ],
            order,
        )

    def _input_identity_blocks(
        self,
        counts_x: tuple[int, int],
        counts_w: tuple[int, int],
        counts_d: tuple[int, int],
    ) -> list[render.Block]:
        cfg = self.config
        st = self.style
        d = st.grad
        out: list[render.Block] = []
        full = [dd * (k - 1) for k, dd in zip(cfg.kernel_size, cfg.dilation, strict=True)]
        op = "correlation" if cfg.convention == "correlation" else "convolution"
        text = (
            f"The notes' identity (decks 000, 001, 004): {st.grad_text('x')} is the "
            f"full {op} of the zero-padded {d} map with the kernel rotated by 180 degrees"
        )
        markdown = (
            f"The notes' identity (decks 000, 001, 004): ${st.grad_md('x')}$ is the full "
            f"{op} of the zero-padded ${st.md_delta}$ map with the kernel rotated by 180 degrees"
        )
        if cfg.in_channels > 1 or cfg.out_channels > 1:
            text += (
                " (channel axes swapped: input channel c sums over the filters f the "
                "maps delta(f) with Rot180(w(f, c)))"
            )
            markdown += (
                r" (channel axes swapped: input channel $c$ sums over the filters "
                r"$f$ the maps $\delta^{(f)}$ with $\mathrm{Rot}_{180}(w^{(f,c)})$)"
            )
        steps = []
        if any(s > 1 for s in cfg.stride):
            steps.append(
                f"stride {shape_text(cfg.stride)}: first insert stride - 1 zeros between "
                f"neighbouring entries of {d} (deck 004's upsampling, undoing the downsampling "
                f"of the strided forward pass)"
            )
        steps.append(
            f"pad with dilation * (kernel - 1) = {shape_text(full)} zeros on every side"
            + (
                f" (plus {shape_text(self.unreached)} after, for the input samples no window "
                f"reached: their gradient is 0)"
                if any(self.unreached)
                else ""
            )
        )
        if any(dd > 1 for dd in cfg.dilation):
            steps.append(
                f"the rotated kernel's taps are {shape_text(cfg.dilation)} apart (dilation)"
            )
        if cfg.convention == "convolution":
            steps.append(
                "a convolution rotates its kernel once more, so in effect the plain w slides "
                "over the padded map (deck 000's last backward slide)"
            )
        if any(a or b for a, b in cfg.pads):
            steps.append(
                "the result has the padded input's size; the padding region is then dropped "
                "(deck 004: 'the zero padding regions must be deleted before further backprop')"
            )
        out.append(
            Para(
                text + ": " + "; ".join(steps) + ".",
                markdown + ": " + "; ".join(steps) + ".",
            )
        )
        if any(s > 1 for s in cfg.stride):
            out += self._per_map(
                self.zero_inserted_delta, f"zero-inserted {d}", "sf", counts_d, st.grad_input
            )
        out += self._per_map(self.padded_delta, f"padded {d}", "sf", counts_d, st.grad_input)
        out += self._per_map(self.rotated_kernel, "Rot180(w)", "fc", counts_w)
        if any(a or b for a, b in cfg.pads):
            out += self._per_map(
                self.grad_padded_input,
                "dL/dx_pad",
                "sc",
                counts_x,
                st.grad_input,
                self._padding_mask(),
                "(entries in parentheses: the padding region, dropped)",
            )
            out.append(Para(self._dropped_text(), None))
        out.append(_proof_para(self.identities[0]))
        return out

    def _padding_mask(self) -> np.ndarray:
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

    def _dropped_text(self) -> str:
        cfg = self.config
        axes = ["rows", "columns"] if cfg.spatial == 2 else ["entries"]
        parts = []
        for (before, after), name, n in zip(cfg.pads, axes, cfg.padded_size, strict=True):
            if before or after:
                first = ", ".join(str(i + 1) for i in range(before))
                last = ", ".join(str(i + 1) for i in range(n - after, n))
                listing = " and ".join(p for p in (first, last) if p)
                parts.append(f"{name} {listing}")
        return (
            f"Dropped from the {shape_text(cfg.padded_size)} dL/dx_pad: "
            + "; ".join(parts)
            + f" (the padding), leaving the {shape_text(cfg.input_size)} dL/dx."
        )

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


def _proof_para(identity: Identity) -> Para:
    count = identity.lhs.size
    entries = "its single entry" if count == 1 else f"all {count} entries"
    if identity.proven:
        verdict = f"== 0 for {entries}: the identity holds."
        md = f"= 0$ for {entries}: the identity holds."
    else:
        verdict = f"!= 0 for some of {entries}: the identity FAILS."
        md = rf"\neq 0$ for some of {entries}: the identity FAILS."
    return Para(
        "sympy: expand(lhs - rhs) " + verdict,
        r"sympy: $\mathrm{expand}(\mathrm{lhs} - \mathrm{rhs}) " + md,
    )


def _convention_text(convention: str) -> str:
    if convention == "correlation":
        return (
            "Convention: cross-correlation, as PyTorch and this library compute the forward "
            "pass (the kernel slides as written). Decks 000/001 write the same layer as a "
            "true convolution with the kernel rotated by 180 degrees (--convention convolution)."
        )
    return (
        "Convention: true convolution, as decks 000/001 write it (the kernel is rotated by 180 "
        "degrees before it slides). The engine, like PyTorch, computes cross-correlation: it "
        "stores Rot180(w) as its weight."
    )


def _convention_markdown(convention: str) -> str:
    if convention == "correlation":
        return (
            "Convention: cross-correlation $\\star$, as PyTorch and this library compute the "
            "forward pass (the kernel slides as written). Decks 000/001 write the same layer as "
            "a true convolution $*$ with the kernel rotated by 180 degrees."
        )
    return (
        "Convention: true convolution $*$, as decks 000/001 write it (the kernel is rotated by "
        "180 degrees before it slides). The engine, like PyTorch, computes cross-correlation: "
        r"it stores $\mathrm{Rot}_{180}(w)$ as its weight."
    )


def _forward_formula(cfg: ConvConfig, st: _Style) -> list[render.Block]:
    out = st.out
    b = " + b" if cfg.bias else ""
    flip = cfg.convention == "convolution"
    if cfg.spatial == 1:
        tap = "(K-k) D" if flip else "(k-1) D"
        text = f"{out}_i = sum_k w_k x_pad[(i-1) S + {tap} + 1]{b}"
        latex = (
            rf"{out}_i = \sum_k w_k\, x^{{pad}}_{{(i-1)S + "
            rf"{'(K-k)D' if flip else '(k-1)D'} + 1}}{b}"
        )
    else:
        p, q = ("(K-p) D", "(K-q) D") if flip else ("(p-1) D", "(q-1) D")
        text = f"{out}_ij = sum_p sum_q w_pq x_pad[(i-1) S + {p} + 1, (j-1) S + {q} + 1]{b}"
        lp, lq = (p.replace(" ", ""), q.replace(" ", ""))
        latex = (
            rf"{out}_{{ij}} = \sum_p \sum_q w_{{pq}}\, x^{{pad}}_{{(i-1)S + {lp} + 1,\,"
            rf"(j-1)S + {lq} + 1}}{b}"
        )
    intro = (
        f"The definition, with stride S = {shape_text(cfg.stride)}, dilation D = "
        f"{shape_text(cfg.dilation)}, 1-based indices and x_pad the zero-padded input"
        + (" (the kernel enters rotated: index K - p instead of p - 1)" if flip else "")
        + ":"
    )
    intro_md = intro.replace("x_pad", "$x^{pad}$")
    return [Para(intro, intro_md), Formula(text, latex)]


def _multichannel_forward(cfg: ConvConfig) -> tuple[str, str]:
    group = " within its group" if cfg.groups > 1 else ""
    operation = "correlations" if cfg.convention == "correlation" else "convolutions"
    return (
        f"Several channels (deck 002): output map f of sample s sums the {operation} "
        f"of every input channel c{group} with its kernel plane w(f, c): "
        "h(s, f) = sum_c x(s, c) * w(f, c) + b(f).",
        "Several channels (deck 002): output map $f$ of sample $s$ sums over the input channels "
        f"$c${group}: " + r"$h^{(s,f)} = \sum_c x^{(s,c)} \star w^{(f,c)} + b^{(f)}$.",
    )


def _multichannel_backward(cfg: ConvConfig) -> tuple[str, str]:
    return (
        "Deck 002's formulas, which the identities above instantiate: forward "
        "y(s, j) = sum_i x(s, i) * w(j, i); backward dL/dx(s, i) = sum_j dL/dy(s, j) * "
        "Rot180(w(j, i)) (full, i.e. over the zero-padded map: the channel axes of the kernel "
        "are swapped); weight update dL/dw(j, i) = sum_s dL/dy(s, j) * x(s, i) (summed over "
        "the minibatch); dL/db(j) = sum over s and positions of dL/dy(s, j).",
        "Deck 002's formulas, which the identities above instantiate: forward "
        r"$y_{(s,j)} = \sum_{i} x_{(s,i)} \star w_{(j,i)}$; backward "
        r"$\frac{\partial L}{\partial x_{(s,i)}} = \sum_{j} \frac{\partial L}{\partial y_{(s,j)}}"
        r" \star \mathrm{Rot}_{180}(w_{(j,i)})$ (full correlation: the kernel's channel axes are "
        r"swapped); weight update $\frac{\partial L}{\partial w_{(j,i)}} = \sum_{s} "
        r"\frac{\partial L}{\partial y_{(s,j)}} \star x_{(s,i)}$ (summed over the minibatch).",
    )


def _chain_rule_text(st: _Style) -> tuple[str, str]:
    d = st.grad
    if st.short:
        return (
            f"The loss L reaches x only through the outputs, so by the chain rule "
            f"dx_i = sum_o {d}_o (partial y_o / partial x_i) with {d}_o = dL/dy_o (deck 001): "
            f"sympy "
            f"differentiates L = sum_o {d}_o y_o with the {d}'s held fixed.",
            r"The loss $L$ reaches $x$ only through the outputs, so by the chain rule "
            r"$dx_i = \sum_o dy_o\, \partial y_o / \partial x_i$ with $dy_o = \partial L / "
            r"\partial y_o$ (deck 001): sympy differentiates $L = \sum_o dy_o\, y_o$ with the "
            r"$dy$'s held fixed.",
        )
    return (
        "The local gradients delta_ij = dL/dh_ij (deck 000) are given. L reaches x only "
        "through h, so by the chain rule dL/dx = sum_ij delta_ij dh_ij/dx: sympy "
        "differentiates L = sum_ij delta_ij h_ij with the deltas held fixed.",
        r"The local gradients $\delta_{ij} = \partial L / \partial h_{ij}$ (deck 000) are given. "
        r"$L$ reaches $x$ only through $h$, so by the chain rule $\partial L / \partial x = "
        r"\sum_{ij} \delta_{ij}\, \partial h_{ij} / \partial x$: sympy differentiates "
        r"$L = \sum_{ij} \delta_{ij} h_{ij}$ with the deltas held fixed.",
    )


def _weight_identity_text(cfg: ConvConfig, st: _Style) -> tuple[str, str]:
    d = st.grad
    extra = []
    if any(s > 1 for s in cfg.stride):
        extra.append(f"with stride {shape_text(cfg.stride)} the {d} map is zero-inserted first")
    if any(p for pair in cfg.pads for p in pair):
        extra.append("the input zero-padded as in the forward pass")
    if any(dd > 1 for dd in cfg.dilation):
        extra.append(f"read at offsets k * {shape_text(cfg.dilation)} (dilation)")
    if cfg.batch > 1:
        extra.append("summed over the samples of the minibatch")
    tail = (" (" + "; ".join(extra) + ")") if extra else ""
    dm, dw, dw_md = st.md_delta, st.grad_text("w"), st.grad_md("w")
    if cfg.convention == "correlation":
        return (
            f"Weight sharing: every weight is used at every output position, so its gradient "
            f"sums {d} * x over them. The notes' identity (decks 001, 002, 004): {dw} is the "
            f"correlation of the input with the {d} map{tail}.",
            "Weight sharing: every weight is used at every output position, so its gradient "
            f"sums ${dm} \\cdot x$ over them. The notes' identity (decks 001, 002, 004): "
            f"${dw_md} = x \\star {dm}$, the correlation of the input with the ${dm}$ "
            f"map{tail}.",
        )
    return (
        f"Weight sharing: every weight is used at every output position, so its gradient sums "
        f"{d} * x over them. In the true-convolution convention the identity reads "
        f"{dw} = Rot180(x correlated with {d}) -- deck 000's delta * Rot180(phi(v)){tail}.",
        "Weight sharing: every weight is used at every output position, so its gradient sums "
        f"${dm} \\cdot x$ over them. In the true-convolution convention the identity reads "
        f"${dw_md} = \\mathrm{{Rot}}_{{180}}(x \\star {dm}) = {dm} * "
        f"\\mathrm{{Rot}}_{{180}}(x)$ -- deck 000's $\\delta \\star \\phi(v_{{-a,-b}})${tail}.",
    )


def _is_example(cfg: ConvConfig, spatial: int, size: tuple, kernel: tuple, convention: str) -> bool:
    return (
        cfg.spatial == spatial
        and cfg.input_size == size
        and cfg.kernel_size == kernel
        and all(s == 1 for s in cfg.stride)
        and all(d == 1 for d in cfg.dilation)
        and all(p == (0, 0) for p in cfg.pads)
        and cfg.in_channels == cfg.out_channels == 1
        and cfg.batch == 1
        and cfg.convention == convention
    )


def _deck_note(cfg: ConvConfig) -> tuple[str, str] | None:
    if _is_example(cfg, 2, (3, 3), (2, 2), "convolution"):
        text = (
            "This is deck 000's example; h11 ... h22 above are its formulas. Its backward slide "
            "has a typo in the cell dL/dx23, which reads delta12 w21 + delta12 w22; the "
            "derivation gives delta12 w11 + delta22 w21 (x23 enters h12 through w11 and h22 "
            "through w21; compare the mirror cell dL/dx32 = delta21 w11 + delta22 w12)."
        )
        md = (
            "This is deck 000's example; $h_{11}, \\dots, h_{22}$ above are its formulas. Its "
            "backward slide has a typo in the cell $\\partial L/\\partial x_{23}$, which reads "
            "$\\delta_{12} w_{21} + \\delta_{12} w_{22}$; the derivation gives "
            "$\\delta_{12} w_{11} + \\delta_{22} w_{21}$ ($x_{23}$ enters $h_{12}$ through "
            "$w_{11}$ and $h_{22}$ through $w_{21}$; compare the mirror cell "
            "$\\partial L/\\partial x_{32} = \\delta_{21} w_{11} + \\delta_{22} w_{12}$)."
        )
        return text, md
    if _is_example(cfg, 2, (3, 3), (2, 2), "correlation"):
        text = (
            "Deck 000 writes this layer as a true convolution; run with --convention "
            "convolution to see its formulas (h11 = x11 w22 + x12 w21 + x21 w12 + x22 w11)."
        )
        return text, text
    if _is_example(cfg, 1, (4,), (2,), "correlation"):
        text = (
            "This is deck 001's example (its y1 = w1 x1 + w2 x2 + b slides the filter as "
            "written: a cross-correlation). The slides' text has typos that the derivation "
            "corrects: 'y1 = w1x1 = w2x2 + b' for y1 = w1 x1 + w2 x2 + b (likewise y2, y3); "
            "'dw2 = x2 dy2 + x3 dy3 + x4 dy4' for dw2 = x2 dy1 + x3 dy2 + x4 dy3; "
            "'dx2 = w2 dy1 + w1 dy_w' for dx2 = w2 dy1 + w1 dy2; and the last formula, "
            "labelled dw, is dx = [0, dy1, dy2, dy3, 0] * [w2, w1] -- the full convolution of "
            "the padded dy with the flipped filter, shown above."
        )
        md = (
            "This is deck 001's example (its $y_1 = w_1 x_1 + w_2 x_2 + b$ slides the filter as "
            "written: a cross-correlation). The slides' text has typos that the derivation "
            "corrects: '$y_1 = w_1x_1 = w_2x_2 + b$' for $y_1 = w_1 x_1 + w_2 x_2 + b$ "
            "(likewise $y_2, y_3$); '$dw_2 = x_2 dy_2 + x_3 dy_3 + x_4 dy_4$' for "
            "$dw_2 = x_2 dy_1 + x_3 dy_2 + x_4 dy_3$; '$dx_2 = w_2 dy_1 + w_1 dy_w$' for "
            "$dx_2 = w_2 dy_1 + w_1 dy_2$; and the last formula, labelled $dw$, is "
            "$dx = [0, dy_1, dy_2, dy_3, 0] * [w_2, w_1]$ -- the full convolution of the padded "
            "$dy$ with the flipped filter, shown above."
        )
        return text, md
    return None


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
