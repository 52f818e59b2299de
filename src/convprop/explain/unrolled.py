"""``explain matrix``: a convolution as a matrix acting on the flattened input (deck 002).

Flatten the input row by row (deck 002 names the 3x3 input a, b, ..., i) and the output
likewise; the convolution is then the linear map h = M x, with M[o, i] = dh_o / dx_i: deck
002's 9x9 matrix of w's and zeros for a 3x3 kernel with 'same' padding. Backpropagation is its
transpose, dL/dx = M^T delta, and M^T is itself the matrix of the full correlation of the
padded delta map with the flipped kernel ("just another convolution"). For the weights, write
h = Q m with m the flattened kernel and the rows of Q the (padded) input patches each output
reads; then dL/dm = Q^T delta. sympy proves every one of these statements entry by entry.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from convprop.explain import convolution, notation, render, symbolic
from convprop.explain.base import Explanation, shape_text, too_large
from convprop.explain.render import Grid, Heading, Label, Matrix, Para

FUNC = "explain matrix"
MAX_SIDE = 25  # rows or columns of the unrolled matrix: beyond this it stops being readable

ROT180_STATEMENT = "M^T = matrix of the full correlation of the padded delta with Rot180(w)"


def _jacobian(exprs: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """J[o, i] = d exprs[o] / d symbols[i] (the expressions are linear in the symbols)."""
    out = symbolic.zeros((exprs.size, symbols.size))
    for o, expr in enumerate(exprs.ravel()):
        polynomial = symbolic.Polynomial(expr)
        for i, symbol in enumerate(symbols.ravel()):
            out[o, i] = polynomial.derivative(symbol)
    return out


def _matmul(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    out = symbolic.zeros((matrix.shape[0],))
    for r in range(matrix.shape[0]):
        out[r] = sympy.Add(*(matrix[r, c] * vector[c] for c in range(matrix.shape[1])))
    return out


class MatrixExplanation(Explanation):
    """Deck 002's unrolled view of a single-channel convolution (no bias).

    Attributes: ``conv`` (the underlying ``ConvExplanation``), ``M`` (outputs x inputs),
    ``M_T`` (its transpose), ``R`` (the matrix of the full correlation of the padded delta with
    the flipped kernel, proven equal to ``M_T``), ``Q`` (outputs x weights), and the flattened
    ``x``, ``h`` (output symbols), ``m`` (weights), ``delta``. ``proofs`` maps each statement to
    sympy's verdict.
    """

    kind = "matrix"

    def __init__(self, conv: convolution.ConvExplanation) -> None:
        self.conv = conv
        self.config = conv.config
        self.seed = conv.seed
        self.x = conv.x.ravel()
        self.h = conv.outputs.ravel()
        self.m = conv.w.ravel()
        self.delta = conv.delta.ravel()
        self.outputs = conv.forward.ravel()
        self.M = _jacobian(conv.forward, conv.x)
        self.M_T = self.M.T
        self.R = _jacobian(conv.identities[0].rhs, conv.delta).reshape(self.x.size, self.delta.size)
        self.Q = _jacobian(conv.forward, conv.w)
        grad_input = conv.grad_input.ravel()
        grad_weight = conv.grad_weight.ravel()
        self.proofs = {
            "h = M x": symbolic.proven_equal(_matmul(self.M, self.x), self.outputs),
            "dL/dx = M^T delta": symbolic.proven_equal(_matmul(self.M_T, self.delta), grad_input),
            ROT180_STATEMENT: symbolic.proven_equal(self.R, self.M_T),
            "h = Q m": symbolic.proven_equal(_matmul(self.Q, self.m), self.outputs),
            "dL/dm = Q^T delta": symbolic.proven_equal(_matmul(self.Q.T, self.delta), grad_weight),
        }
        self._verification = self._verify()

    @property
    def verification(self) -> render.Verification:
        return self._verification

    def _verify(self) -> render.Verification:
        values = self.conv.values()
        engine = self.conv.engine(values)
        x = np.array([values[s] for s in self.x])
        delta = np.array([values[s] for s in self.delta])
        m_numeric = symbolic.evaluate(self.M, values)
        q_numeric = symbolic.evaluate(self.Q, values)
        details = {
            "M x vs forward": convolution.max_diff(m_numeric @ x, engine["forward"].ravel()),
            "M^T delta vs input gradient": convolution.max_diff(
                m_numeric.T @ delta, engine["grad_input"].ravel()
            ),
            "Q^T delta vs weight gradient": convolution.max_diff(
                q_numeric.T @ delta, engine["grad_weight"].ravel()
            ),
        }
        return render.Verification(
            "M x, M^T delta and Q^T delta",
            self.conv.engine_name,
            max(details.values()),
            seed=self.seed,
            details=details,
        )

    # ----------------------------------------------------------------------- document
    def _proof(self, statement: str) -> Para:
        proven = self.proofs[statement]
        verdict = "proven" if proven else "FAILS"
        latex = _STATEMENT_LATEX[statement]
        return Para(
            f"sympy: {statement} -- {verdict} entry by entry (expand(lhs - rhs) == 0).",
            f"sympy: {latex} -- {verdict} entry by entry "
            r"($\mathrm{expand}(\mathrm{lhs} - \mathrm{rhs}) = 0$).",
        )

    def blocks(self) -> list[render.Block]:
        cfg = self.config
        d = self.conv.style.grad
        x_labels = [render.label(s) for s in self.x]
        h_labels = [render.label(s) for s in self.h]
        m_labels = [render.label(s) for s in self.m]
        d_labels = [render.label(s) for s in self.delta]
        order_fwd = notation.NATURAL
        deck = _is_deck_002(cfg)
        letters = ""
        if deck:
            letters = (
                " Deck 002 names the inputs a, b, ..., i (here x11, x12, ..., x33) and "
                "the outputs alpha, beta, ..., kappa (here h11, ..., h33)."
            )
        out: list[render.Block] = [
            Heading(f"Convolution as a matrix: {cfg.describe()}", 1),
            Para(
                f"Flatten the {shape_text(cfg.input_size)} input x row by row into a vector of "
                f"{self.x.size} entries and the {shape_text(cfg.output_size)} output h likewise "
                f"({self.h.size} entries). The convolution is linear in x, so h = M x with "
                f"M[o, i] = dh_o/dx_i: every row holds the kernel's weights where that output's "
                f"window covers the input, and zeros elsewhere (padding drops the weights that "
                f"fall on the zero border).{letters} (No bias here: it would add b to every "
                f"output.)",
                f"Flatten the {shape_text(cfg.input_size)} input $x$ row by row into a vector of "
                f"{self.x.size} entries and the {shape_text(cfg.output_size)} output $h$ "
                f"likewise ({self.h.size} entries). The convolution is linear in $x$, so "
                r"$h = Mx$ with $M_{oi} = \partial h_o / \partial x_i$: every row holds the "
                "kernel's weights where that output's window covers the input, and zeros "
                f"elsewhere (padding drops the weights that fall on the zero border).{letters} "
                "(No bias here: it would add $b$ to every output.)",
            ),
            Grid("kernel w", self.conv.w[0, 0]),
            Matrix(Label("M", "M"), self.M, h_labels, x_labels, order_fwd),
            self._proof("h = M x"),
            Heading("Backward pass: the transpose"),
            Para(
                f"Since h = M x, dL/dx = M^T dL/dh = M^T {d} (deck 002: 'taking a matrix "
                f"transpose yields the backpropagation algorithm for the convolution layer').",
                r"Since $h = Mx$, $\partial L/\partial x = M^T \partial L/\partial h = M^T "
                r"\delta$ (deck 002: 'taking a matrix transpose yields the backpropagation "
                "algorithm for the convolution layer').",
            ),
            Matrix(Label("M^T", "M^T"), self.M_T, x_labels, d_labels, order_fwd),
            self._proof("dL/dx = M^T delta"),
            Para(
                "Each row of M^T holds the kernel again, flipped: M^T is the matrix of the full "
                f"correlation of the zero-padded {d} map with Rot180(w) (deck 002: 'just another "
                "convolution!'), with the padding region dropped.",
                "Each row of $M^T$ holds the kernel again, flipped: $M^T$ is the matrix of the "
                r"full correlation of the zero-padded $\delta$ map with $\mathrm{Rot}_{180}(w)$ "
                "(deck 002: 'just another convolution!'), with the padding region dropped.",
            ),
            Grid("Rot180(w)", self.conv.rotated_kernel[0, 0]),
            self._proof(ROT180_STATEMENT),
            *self._weight_gradient_blocks(m_labels, h_labels),
            self.verification,
        ]
        return out

    def _weight_gradient_blocks(
        self, m_labels: list[Label], h_labels: list[Label]
    ) -> list[render.Block]:
        """Deck 002's second matrix: the outputs as h = Q m, the weight gradient Q^T delta."""
        d = self.conv.style.grad
        return [
            Heading("Weight gradient: Q^T delta"),
            Para(
                f"The same outputs are linear in the weights: h = Q m with m = the flattened "
                f"kernel ({', '.join(s.name for s in self.m)}) and row o of Q the patch of the "
                f"zero-padded input that output o reads (deck 002's Q). Hence "
                f"(dL/dm)^T = Q^T (dL/dh)^T: the weight gradient is a (large) correlation of the "
                f"padded input with {d}.",
                "The same outputs are linear in the weights: $h = Qm$ with $m$ the flattened "
                f"kernel (${', '.join(notation.parse_name(s.name).latex for s in self.m)}$) and "
                "row $o$ of $Q$ the patch of the zero-padded input that output $o$ reads (deck "
                r"002's $Q$). Hence $(\partial L/\partial m)^T = Q^T (\partial L/\partial h)^T$: "
                r"the weight gradient is a (large) correlation of the padded input with $\delta$.",
            ),
            Grid("zero-padded input", self.conv.padded_input[0, 0]),
            Matrix(Label("Q", "Q"), self.Q, h_labels, m_labels),
            self._proof("h = Q m"),
            self._proof("dL/dm = Q^T delta"),
            Para(
                "Gradient descent then updates the flattened kernel: m_new = m_old - mu (dL/dm)^T "
                "(deck 002's weight update, mu the learning rate).",
                r"Gradient descent then updates the flattened kernel: $m^{new} = m^{old} - \mu "
                r"(\partial L/\partial m)^T$ (deck 002's weight update, $\mu$ the learning rate).",
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        def grid(array: np.ndarray) -> Any:
            return np.vectorize(notation.source, otypes=[object])(array).tolist()

        return {
            "kind": "matrix",
            "config": self.config.to_dict(),
            "input_order": [s.name for s in self.x],
            "output_order": [s.name for s in self.h],
            "weight_order": [s.name for s in self.m],
            "local_gradient_order": [s.name for s in self.delta],
            "M": grid(self.M),
            "M_T": grid(self.M_T),
            "Q": grid(self.Q),
            "forward": {
                h.name: notation.source(e) for h, e in zip(self.h, self.outputs, strict=True)
            },
            "backward": {
                "input": {
                    render.grad_label(s).text: notation.source(g)
                    for s, g in zip(self.x, self.conv.grad_input.ravel(), strict=True)
                },
                "weight": {
                    render.grad_label(s).text: notation.source(g)
                    for s, g in zip(self.m, self.conv.grad_weight.ravel(), strict=True)
                },
            },
            "identities": [{"statement": k, "proven": v} for k, v in self.proofs.items()],
            "verification": self.verification.to_dict(),
        }


_STATEMENT_LATEX = {
    "h = M x": "$h = Mx$",
    "dL/dx = M^T delta": r"$\partial L/\partial x = M^T \delta$",
    ROT180_STATEMENT: r"$M^T$ = the matrix of the full correlation of the padded $\delta$ "
    r"with $\mathrm{Rot}_{180}(w)$",
    "h = Q m": "$h = Qm$",
    "dL/dm = Q^T delta": r"$\partial L/\partial m = Q^T \delta$",
}


def _is_deck_002(cfg: convolution.ConvConfig) -> bool:
    return (
        cfg.input_size == (3, 3)
        and cfg.kernel_size == (3, 3)
        and cfg.pads == ((1, 1), (1, 1))
        and cfg.stride == (1, 1)
        and cfg.dilation == (1, 1)
        and cfg.convention == "correlation"
    )


def matrix(
    input_size: int | tuple[int, ...],
    kernel_size: int | tuple[int, ...],
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, ...] = 1,
    convention: str = "correlation",
    seed: int = 0,
) -> MatrixExplanation:
    """Explain a single-channel convolution as a matrix (deck 002); see the module docstring.

    ``matrix((3, 3), (3, 3), padding='same')`` is deck 002's 9x9 example.
    """
    config = convolution.resolve(
        FUNC, input_size, kernel_size, stride, padding, dilation, convention=convention, bias=False
    )
    rows, cols = int(np.prod(config.output_size)), int(np.prod(config.input_size))
    if max(rows, cols) > MAX_SIDE:
        raise too_large(
            FUNC,
            f"the matrix's larger side (outputs x inputs = {rows} x {cols})",
            max(rows, cols),
            MAX_SIDE,
            "choose an input of at most 25 entries (e.g. 5x5)",
        )
    return MatrixExplanation(convolution.ConvExplanation(config, seed))
