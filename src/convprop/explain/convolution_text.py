"""``explain conv`` as a document: the words, formulas and grids of a convolution's derivation.

:func:`document` lays out a :class:`~convprop.explain.convolution.ConvExplanation` (its forward
pass, each gradient with the notes' identity and sympy's proof, what the decks say about the
example, the verification); the helpers below hold the text in the notes' notation, in the
1-D style of deck 001 (``y``, ``dy``) or the 2-D style of deck 000 (``h``, ``delta``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import sympy

from convprop.explain import notation, render
from convprop.explain.base import shape_text
from convprop.explain.notation import Order
from convprop.explain.render import Equations, Formula, Grid, Heading, Para

if TYPE_CHECKING:
    from convprop.explain.convolution import ConvConfig, ConvExplanation, Identity


@dataclass(frozen=True)
class Style:
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


STYLES = {
    # Deck 001 (1-D): y1 = w1 x1 + w2 x2 + b, dx2 = w2 dy1 + w1 dy2, dw1 = x1 dy1 + ...
    1: Style(
        "y",
        "dy",
        True,
        Order(("w", "x"), ("x", "w")),
        Order(("w", "dy"), ("dy", "w")),
        Order(("x", "dy"), ("x", "dy")),
        Order(("dy",)),
    ),
    # Deck 000 (2-D): h11 = x11 w22 + ..., dL/dx12 = delta11 w21 + delta12 w22
    2: Style(
        "h",
        "delta",
        False,
        Order(("x", "w")),
        Order(("delta", "w")),
        Order(("delta", "x")),
        Order(("delta",)),
    ),
}


def _channel_title(
    name: str, index: tuple[int, ...], letters: Sequence[str], counts: Sequence[int]
) -> str:
    words = {"s": "sample", "c": "channel", "f": "filter"}
    parts = [
        f"{words[letter]} {i + 1}"
        for letter, i, n in zip(letters, index, counts, strict=True)
        if n > 1
    ]
    return name + (f" ({', '.join(parts)})" if parts else "")


def _per_map(
    ex: ConvExplanation,
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
                _channel_title(name, index, letters, counts),
                array[index],
                order,
                shaded,
                note,
            )
        )
    return grids


def document(ex: ConvExplanation) -> list[render.Block]:
    """The explanation as a document: forward pass, each gradient with the notes' identity
    and its proof, the deck's own notes, the verification."""
    cfg = ex.config
    st = ex.style
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
    out += _per_map(ex, ex.x, "input x", "sc", counts_x)
    out += _per_map(ex, ex.w, "kernel w", "fc", counts_w)
    if conv_conv:
        out += _per_map(
            ex, ex.kernel, "Rot180(w): the kernel that slides over the input", "fc", counts_w
        )
    out += _forward_formula(cfg, st)
    if cfg.in_channels > 1 or cfg.out_channels > 1 or cfg.batch > 1:
        out.append(Para(*_multichannel_forward(cfg)))
    out.append(
        Equations(
            [
                (render.label(o), [e])
                for o, e in zip(ex.outputs.ravel(), ex.forward.ravel(), strict=True)
            ],
            st.forward,
        )
    )

    out.append(Heading("Backward pass: the input gradient"))
    out.append(Para(*_chain_rule_text(st)))
    if cfg.spatial == 2:
        out += _per_map(ex, ex.grad_input, "dL/dx", "sc", counts_x, st.grad_input)
    else:
        out.append(_equations(ex, ex.x, ex.grad_input, st.grad_input))
    out += _input_identity_blocks(ex, counts_x, counts_w, counts_d)
    out.append(Heading("Backward pass: the weight gradient"))
    if cfg.spatial == 2:
        out += _per_map(ex, ex.grad_weight, "dL/dw", "fc", counts_w, st.grad_weight)
    else:
        out.append(_equations(ex, ex.w, ex.grad_weight, st.grad_weight))
    out.append(Para(*_weight_identity_text(cfg, st)))
    out.append(_proof_para(ex.identities[1]))
    if cfg.bias:
        out.append(Heading("Backward pass: the bias gradient"))
        out.append(_equations(ex, ex.b, ex.grad_bias, st.bias))
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
        out.append(_proof_para(ex.identities[2]))
    if cfg.in_channels > 1 or cfg.out_channels > 1 or cfg.batch > 1:
        out.append(Heading("Several channels and samples (deck 002)"))
        out.append(Para(*_multichannel_backward(cfg)))
    note = _deck_note(cfg)
    if note:
        out.append(Heading("About the lecture notes"))
        out.append(Para(*note))
    out.append(ex.verification)
    return out


def _equations(
    ex: ConvExplanation, symbols: np.ndarray, grads: np.ndarray, order: Order
) -> Equations:
    return Equations(
        [
            (ex.grad_label(s), [g])
            for s, g in zip(symbols.ravel(), grads.ravel(), strict=True)
            if isinstance(s, sympy.Symbol)
        ],
        order,
    )


def _input_identity_steps(ex: ConvExplanation) -> list[str]:
    """The recipe of dL/dx for this layer, step by step, in the notes' words."""
    cfg = ex.config
    d = ex.style.grad
    full = [dd * (k - 1) for k, dd in zip(cfg.kernel_size, cfg.dilation, strict=True)]
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
            f" (plus {shape_text(ex.unreached)} after, for the input samples no window "
            f"reached: their gradient is 0)"
            if any(ex.unreached)
            else ""
        )
    )
    if any(dd > 1 for dd in cfg.dilation):
        steps.append(f"the rotated kernel's taps are {shape_text(cfg.dilation)} apart (dilation)")
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
    return steps


def _input_identity_blocks(
    ex: ConvExplanation,
    counts_x: tuple[int, int],
    counts_w: tuple[int, int],
    counts_d: tuple[int, int],
) -> list[render.Block]:
    cfg = ex.config
    st = ex.style
    d = st.grad
    out: list[render.Block] = []
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
    steps = _input_identity_steps(ex)
    out.append(
        Para(
            text + ": " + "; ".join(steps) + ".",
            markdown + ": " + "; ".join(steps) + ".",
        )
    )
    if any(s > 1 for s in cfg.stride):
        out += _per_map(
            ex, ex.zero_inserted_delta, f"zero-inserted {d}", "sf", counts_d, st.grad_input
        )
    out += _per_map(ex, ex.padded_delta, f"padded {d}", "sf", counts_d, st.grad_input)
    out += _per_map(ex, ex.rotated_kernel, "Rot180(w)", "fc", counts_w)
    if any(a or b for a, b in cfg.pads):
        out += _per_map(
            ex,
            ex.grad_padded_input,
            "dL/dx_pad",
            "sc",
            counts_x,
            st.grad_input,
            ex.padding_mask(),
            "(entries in parentheses: the padding region, dropped)",
        )
        out.append(Para(_dropped_text(ex), None))
    out.append(_proof_para(ex.identities[0]))
    return out


def _dropped_text(
    ex: ConvExplanation,
) -> str:
    cfg = ex.config
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


def _forward_formula(cfg: ConvConfig, st: Style) -> list[render.Block]:
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


def _chain_rule_text(st: Style) -> tuple[str, str]:
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


def _weight_identity_text(cfg: ConvConfig, st: Style) -> tuple[str, str]:
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
