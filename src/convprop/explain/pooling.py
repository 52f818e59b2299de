"""``explain pool``: max and mean pooling on concrete numbers, routed back as deck 004 does.

Max pooling (deck 004, "Derivative of max pooling")::

    pidx(m, n) = argmax over the window of x        y(m, n) = x(pidx(m, n))
    dL/dx(pidx(m, n)) += dL/dy(m, n)                 ("+=": windows may overlap)

Mean pooling::

    y(m, n) = (1 / K^2) sum over the window of x     dL/dx(window) += dL/dy(m, n) / K^2

With the numbers fixed, max pooling is linear around them (each output *is* its window's
argmax), so L = sum dy * y is differentiated symbolically exactly as for the convolution: the
result names, for every input, the output gradients routed to it. Ties go to the first maximum
in window (row-major) order, as PyTorch and the engine break them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import sympy

from convprop.explain import notation, render, symbolic
from convprop.explain.base import (
    MAX_TERMS,
    Explanation,
    choice,
    shape_text,
    sizes,
    too_large,
)
from convprop.explain.convolution import max_diff
from convprop.explain.render import Equations, Grid, Heading, Label, Para
from convprop.ops import geometry

FUNC = "explain pool"
MODES = ("max", "mean")


class PoolExplanation(Explanation):
    """Max or mean pooling of one map of numbers, symbol by symbol.

    Attributes: ``values`` (the input numbers), ``x``, ``y``, ``dy`` (symbol arrays),
    ``definition`` (each output as Max(...) or the window mean), ``forward`` (each output as
    the input symbol it equals (max) or the mean), ``argmax`` (max: the input index of each
    output's maximum), ``grad_input`` (dL/dx in terms of dy), ``grad_values`` (the numbers dy
    used in the verification).
    """

    kind = "pool"

    def __init__(
        self,
        mode: str,
        input_size: tuple[int, ...],
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        values: np.ndarray,
        seed: int,
        values_given: bool = False,
    ) -> None:
        self.mode = mode
        self.input_size = input_size
        self.kernel_size = kernel
        self.stride = stride
        self.padding = padding
        self.values = values
        self.values_given = values_given
        self.seed = seed
        self.spatial = len(input_size)
        self.output_size = tuple(
            (n + 2 * p - k) // s + 1
            for n, k, s, p in zip(input_size, kernel, stride, padding, strict=True)
        )
        self.x = notation.symbol_array("x", input_size, [])
        self.y = notation.symbol_array("y", self.output_size, [])
        self.dy = notation.symbol_array("dy", self.output_size, [])
        self.windows: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for o in np.ndindex(*self.output_size):
            members = []
            for k in itertools.product(*(range(n) for n in kernel)):
                index = tuple(o[i] * stride[i] + k[i] - padding[i] for i in range(self.spatial))
                if all(0 <= index[i] < input_size[i] for i in range(self.spatial)):
                    members.append(index)
            self.windows[o] = members
        self.divisor = int(np.prod(kernel))
        self.definition = symbolic.zeros(self.output_size)
        self.forward = symbolic.zeros(self.output_size)
        self.argmax: dict[tuple[int, ...], tuple[int, ...]] = {}
        for o, members in self.windows.items():
            symbols = [self.x[m] for m in members]
            if mode == "max":
                # The first maximum in window order, as the engine (and PyTorch) break ties.
                best = max(range(len(members)), key=lambda i: (values[members[i]], -i))
                self.argmax[o] = members[best]
                self.definition[o] = sympy.Max(*symbols)
                self.forward[o] = symbols[best]
            else:
                mean = sympy.Rational(1, self.divisor) * sympy.Add(*symbols)
                self.definition[o] = sympy.expand(mean)
                self.forward[o] = self.definition[o]
        self.loss = sympy.Add(
            *(d * f for d, f in zip(self.dy.ravel(), self.forward.ravel(), strict=True))
        )
        loss = symbolic.Polynomial(self.loss)
        self.grad_input = symbolic.zeros(input_size)
        for index in np.ndindex(*input_size):
            self.grad_input[index] = loss.derivative(self.x[index])
        rng = np.random.default_rng(seed)
        # Small integers: the routed sums stay readable (and exact).
        self.grad_values = rng.integers(1, 10, size=self.output_size).astype(np.float64)
        self._verification = self._verify()

    # ----------------------------------------------------------------------- verification
    def engine(self) -> dict[str, np.ndarray]:
        from convprop import Tensor
        from convprop.nn import functional as F

        x = Tensor(self.values[np.newaxis, np.newaxis].copy(), requires_grad=True)
        # Without return_indices, max pooling returns one Tensor, as average pooling does.
        pool: Callable[..., Tensor]
        if self.mode == "max":
            pool = cast(Callable[..., Tensor], F.max_pool1d if self.spatial == 1 else F.max_pool2d)
        else:
            pool = F.avg_pool1d if self.spatial == 1 else F.avg_pool2d
        out = pool(x, self.kernel_size, self.stride, self.padding)
        out.backward(self.grad_values[np.newaxis, np.newaxis])
        assert x.grad is not None
        return {"forward": out.numpy()[0, 0], "grad_input": x.grad.numpy()[0, 0]}

    def _symbol_values(self) -> dict[sympy.Symbol, float]:
        values = {s: float(v) for s, v in zip(self.x.ravel(), self.values.ravel(), strict=True)}
        values.update(
            {s: float(v) for s, v in zip(self.dy.ravel(), self.grad_values.ravel(), strict=True)}
        )
        return values

    @property
    def numeric_grad_input(self) -> np.ndarray:
        return symbolic.evaluate(self.grad_input, self._symbol_values())

    @property
    def numeric_output(self) -> np.ndarray:
        return symbolic.evaluate(self.definition, self._symbol_values())

    def _verify(self) -> render.Verification:
        engine = self.engine()
        details = {
            "forward": max_diff(self.numeric_output, engine["forward"]),
            "grad_input": max_diff(self.numeric_grad_input, engine["grad_input"]),
        }
        name = f"{'max' if self.mode == 'max' else 'avg'}_pool{self.spatial}d"
        return render.Verification(
            "the pooled outputs and the routed gradient dL/dx",
            f"the engine's convprop.nn.functional.{name} forward and backward",
            max(details.values()),
            seed=self.seed,
            details=details,
            at="at the input values and the output gradients dy shown above",
        )

    @property
    def verification(self) -> render.Verification:
        return self._verification

    # ----------------------------------------------------------------------- document
    def grad_label(self, symbol: sympy.Symbol) -> Label:
        return render.grad_label(symbol)

    def _mean_label(self, o: tuple[int, ...]) -> Label:
        members = [self.x[m] for m in self.windows[o]]
        text = "(" + " + ".join(s.name for s in members) + f")/{self.divisor}"
        latex = (
            rf"\frac{{1}}{{{self.divisor}}}("
            + " + ".join(notation.parse_name(s.name).latex for s in members)
            + ")"
        )
        return Label(text, latex)

    def _overlaps(self) -> list[tuple[sympy.Symbol, list[sympy.Symbol]]]:
        """Inputs that receive gradient from several outputs ("+=")."""
        sources: dict[tuple[int, ...], list[sympy.Symbol]] = {}
        if self.mode == "max":
            for o, index in self.argmax.items():
                sources.setdefault(index, []).append(self.dy[o])
        else:
            for o, members in self.windows.items():
                for index in members:
                    sources.setdefault(index, []).append(self.dy[o])
        return [(self.x[i], s) for i, s in sorted(sources.items()) if len(s) > 1]

    def blocks(self) -> list[render.Block]:
        return self._input_blocks() + self._forward_blocks() + self._backward_blocks()

    def _input_blocks(self) -> list[render.Block]:
        """The title and the input, as symbols and as numbers."""
        kernel = shape_text(self.kernel_size)
        title = (
            f"{'Max' if self.mode == 'max' else 'Mean'} pooling: {shape_text(self.input_size)} "
            f"input, {kernel} window, stride {shape_text(self.stride)}"
            + (f", padding {shape_text(self.padding)}" if any(self.padding) else "")
        )
        return [
            Heading(title, 1),
            Para(
                "Pooling works on every map separately (deck 004). The input's numbers "
                + (
                    "(given):"
                    if self.values_given
                    else f"(a shuffled 1..{self.values.size}, seed "
                    f"{self.seed}; pass --values to choose):"
                )
            ),
            Grid("input x (symbols)", self.x),
            Grid("input x (values)", self.values.astype(object)),
            Heading("Forward pass"),
        ]

    def _forward_blocks(self) -> list[render.Block]:
        """Each output as its window's maximum (and pidx) or mean."""
        out: list[render.Block] = []
        if self.mode == "max":
            out.append(
                Para(
                    "Each output is the largest entry of its window; pidx remembers where it was "
                    "(ties: the first maximum in row-major window order, as PyTorch).",
                    "Each output is the largest entry of its window, "
                    "$y = x_{\\mathrm{pidx}}$; pidx "
                    "remembers where it was (ties: the first maximum in row-major window order, as "
                    "PyTorch).",
                )
            )
            rows: list[tuple[render.Item, list[render.Item]]] = [
                (
                    render.label(self.y[o]),
                    [self.definition[o], self.forward[o], float(self.values[self.argmax[o]])],
                )
                for o in np.ndindex(*self.output_size)
            ]
        else:
            out.append(
                Para(
                    "Each output is the mean of its window: "
                    f"the sum divided by K^2 = {self.divisor}"
                    + (
                        " (the zero padding counts, as PyTorch's count_include_pad)."
                        if any(self.padding)
                        else "."
                    ),
                    f"Each output is the mean of its window: the sum divided by $K^2 = "
                    f"{self.divisor}$"
                    + (
                        " (the zero padding counts, as PyTorch's count_include_pad)."
                        if any(self.padding)
                        else "."
                    ),
                )
            )
            outputs = self.numeric_output
            rows = [
                (render.label(self.y[o]), [self._mean_label(o), float(outputs[o])])
                for o in np.ndindex(*self.output_size)
            ]
        out.append(Equations(rows))
        out.append(Grid("output y (values)", self.numeric_output.astype(object)))
        return out

    def _backward_blocks(self) -> list[render.Block]:
        """dL/dx routed to the argmax or spread over the window, "+=" where windows overlap,
        on numbers, and the verification against the engine."""
        order = notation.Order(("dy",))
        out: list[render.Block] = [Heading("Backward pass")]
        if self.mode == "max":
            out.append(
                Para(
                    "Only the maximum influenced the output, so dL/dy(m, n) goes back to "
                    "x(pidx(m, n)) alone; every other input of the window gets 0. An input that is "
                    "the maximum of several (overlapping) windows collects all of their gradients: "
                    "deck 004's dy(pidx) += dy(m, n).",
                )
            )
        else:
            out.append(
                Para(
                    f"Every input of a window contributed 1/{self.divisor} of its mean, so it gets "
                    f"dL/dy/{self.divisor} back; an input in several overlapping windows adds them "
                    "up: deck 004's dy(window) += dy(m, n) / K^2.",
                    f"Every input of a window contributed $1/{self.divisor}$ of its mean, "
                    "so it gets "
                    rf"$\partial L/\partial y / {self.divisor}$ back; "
                    "an input in several overlapping "
                    r"windows adds them up: deck 004's $dy_{window} \mathrel{+}= dy_{mn} / K^2$.",
                )
            )
        out.append(Grid("dL/dx", self.grad_input, order))
        overlaps = self._overlaps()
        if overlaps:
            listing = "; ".join(
                f"{x.name} <- {' + '.join(d.name for d in sources)}" for x, sources in overlaps
            )
            out.append(Para(f"'+=' at work (windows overlap): {listing}."))
        elif self.mode == "max":
            out.append(
                Para(
                    "No input is the maximum of two windows here, so nothing adds up; "
                    "try a stride smaller than the window to see '+='."
                )
            )
        out.append(
            Para(
                f"With the output gradients dy below (small integers, seed {self.seed}) these "
                "formulas give the numbers that the engine's backward pass returns:"
            )
        )
        out.append(Grid("dy (values)", self.grad_values.astype(object)))
        out.append(Grid("dL/dx (values)", self.numeric_grad_input.astype(object)))
        out.append(self.verification)
        return out

    def to_dict(self) -> dict[str, Any]:
        order = notation.Order(("dy",))
        outputs = self.numeric_output
        forward = {}
        for o in np.ndindex(*self.output_size):
            entry: dict[str, Any] = {
                "definition": notation.source(self.definition[o]),
                "value": float(outputs[o]),
            }
            selected: sympy.Symbol = self.forward[o]
            output: sympy.Symbol = self.y[o]
            if self.mode == "max":
                entry["selected"] = selected.name
            forward[output.name] = entry
        return {
            "kind": "pool",
            "mode": self.mode,
            "config": {
                "input_size": list(self.input_size),
                "kernel_size": list(self.kernel_size),
                "stride": list(self.stride),
                "padding": list(self.padding),
                "output_size": list(self.output_size),
            },
            "input_values": self.values.tolist(),
            "forward": forward,
            "backward": {
                self.grad_label(s).text: notation.source(g, order)
                for s, g in zip(self.x.ravel(), self.grad_input.ravel(), strict=True)
            },
            "output_gradient_values": self.grad_values.tolist(),
            "input_gradient_values": self.numeric_grad_input.tolist(),
            "verification": self.verification.to_dict(),
        }


def pool(
    mode: str = "max",
    input_size: int | Sequence[int] = (4, 4),
    kernel_size: int | Sequence[int] = 2,
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    values: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
) -> PoolExplanation:
    """Explain max or mean pooling on numbers (``values``, row-major, or a seeded shuffle of
    1..N); ``stride`` defaults to the window size as in PyTorch."""
    mode = choice(mode, MODES, FUNC, "mode")
    size = sizes(input_size, FUNC, "input_size")
    spatial = len(size)
    if int(np.prod(size)) > 1024:
        raise too_large(
            FUNC, "the number of input values", int(np.prod(size)), 1024, "choose a smaller input"
        )
    given = values is not None
    if values is None:
        rng = np.random.default_rng(seed)
        numbers = rng.permutation(int(np.prod(size))).astype(np.float64) + 1
    else:
        numbers = np.asarray(values, dtype=np.float64).ravel()
        if numbers.size != int(np.prod(size)):
            raise ValueError(
                f"{FUNC}: values has {numbers.size} numbers but the {shape_text(size)} input "
                f"needs {int(np.prod(size))} (row by row)"
            )
        if not np.all(np.isfinite(numbers)):
            raise ValueError(f"{FUNC}: values must be finite numbers, got {numbers.tolist()}")
    numbers = numbers.reshape(size)
    # The engine's window rules and messages (kernel, stride, padding, output size).
    engine = f"{'max' if mode == 'max' else 'avg'}_pool{spatial}d"
    windows = geometry.pool_geometry(engine, size, kernel_size, stride, padding, 1, False)
    kernel, strides, pads, out_size = (
        windows.kernel,
        windows.stride,
        windows.padding,
        windows.out_size,
    )
    terms = int(np.prod(out_size)) * int(np.prod(kernel))
    if terms > MAX_TERMS:
        raise too_large(
            FUNC,
            "the number of window entries (outputs x window size)",
            terms,
            MAX_TERMS,
            "choose a smaller input or window, or a larger stride",
        )
    return PoolExplanation(mode, size, kernel, strides, pads, numbers, seed, given)
