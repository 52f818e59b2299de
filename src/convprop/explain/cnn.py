"""``explain network``: a tiny CNN of deck 004's shape, forward and backward, layer by layer.

    x --conv (F filters KxK, bias)--> z --f--> y --max pool--> u --flatten--> v
      --linear--> s --softmax--> p --cross-entropy with the target d--> E

The backward pass is derived by hand with the notes' formulas, in NumPy, independently of the
engine:

* dE/ds = p - onehot(d)                          (softmax and cross-entropy together)
* dE/dW = dE/ds v^T,  dE/dc = dE/ds,  dE/dv = W^T dE/ds          (deck 002's Y = WX + b)
* dE/du = dE/dv reshaped to the maps              (flattening is only an "unrolling")
* dE/dy(pidx) += dE/du                            (max pooling routes to the argmax)
* dE/dz = dE/dy f'(z)                             (deck 004: dDiv/dz = dDiv/dy f'(z))
* dE/dw = x correlated with dE/dz,  dE/db = sum dE/dz
* dE/dx = full correlation of the zero-padded dE/dz with Rot180(w), summed over filters

and compared with the engine's gradients (``Tensor.retain_grad`` keeps every layer's delta).
One gradient-descent step w <- w - lr dE/dw follows, and the loss is recomputed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convprop.explain import render
from convprop.explain.base import Explanation, choice, positive_int, shape_text, sizes
from convprop.explain.convolution import max_diff
from convprop.explain.render import Grid, Heading, Para

FUNC = "explain network"
ACTIVATIONS = ("relu", "sigmoid", "tanh")


# ------------------------------------------------------------------- the notes' formulas
def _correlate_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """out[i, j] = sum_{p, q} kernel[p, q] image[i + p, j + q]."""
    windows = sliding_window_view(image, kernel.shape)
    return np.einsum("ijpq,pq->ij", windows, kernel)


def _activation(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(z) and f'(z)."""
    if name == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(z.dtype)
    if name == "sigmoid":
        y = 1.0 / (1.0 + np.exp(-z))
        return y, y * (1.0 - y)
    y = np.tanh(z)
    return y, 1.0 - y * y


def _max_pool(maps: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping k x k max pooling of (F, H, W); also the argmax's flat window index."""
    f, h, w = maps.shape
    blocks = maps[:, : h - h % k, : w - w % k].reshape(f, h // k, k, w // k, k)
    blocks = blocks.transpose(0, 1, 3, 2, 4).reshape(f, h // k, w // k, k * k)
    # np.argmax picks the first maximum in row-major window order, as the engine does.
    return blocks.max(axis=-1), blocks.argmax(axis=-1)


def _route_max(grad_pooled: np.ndarray, argmax: np.ndarray, shape: tuple, k: int) -> np.ndarray:
    """dE/dy(pidx) += dE/du: every pooled gradient goes back to its window's maximum."""
    grad = np.zeros(shape)
    f_idx, m_idx, n_idx = np.indices(argmax.shape)
    rows = m_idx * k + argmax // k
    cols = n_idx * k + argmax % k
    np.add.at(grad, (f_idx, rows, cols), grad_pooled)
    return grad


class NetworkExplanation(Explanation):
    """Forward values, hand-derived deltas, engine deltas and one SGD step of a tiny CNN.

    ``forward`` and ``backward`` map layer names to NumPy arrays (the hand derivation);
    ``engine_grads`` holds the engine's; ``updated`` the parameters after one step.
    """

    kind = "network"

    def __init__(
        self,
        seed: int,
        activation: str,
        lr: float,
        input_size: tuple[int, int],
        filters: int,
        kernel: int,
        pool: int,
        classes: int,
        target: int | None,
    ) -> None:
        self.seed, self.activation, self.lr = seed, activation, lr
        self.filters, self.kernel, self.pool, self.classes = filters, kernel, pool, classes
        rng = np.random.default_rng(seed)
        # Rounded numbers keep the printed tables short; the arithmetic is exact float64.
        x = np.round(rng.uniform(-1, 1, input_size), 1)
        w1 = np.round(rng.uniform(-0.5, 0.5, (filters, 1, kernel, kernel)), 2)
        b1 = np.round(rng.uniform(-0.1, 0.1, filters), 2)
        conv_size = tuple(n - kernel + 1 for n in input_size)
        pooled = tuple(n // pool for n in conv_size)
        flat = filters * pooled[0] * pooled[1]
        w2 = np.round(rng.uniform(-0.5, 0.5, (classes, flat)), 2)
        b2 = np.round(rng.uniform(-0.1, 0.1, classes), 2)
        self.target = int(rng.integers(classes)) if target is None else target
        self.params = {"w1": w1, "b1": b1, "W2": w2, "b2": b2}
        self.input = x
        self.conv_size, self.pooled_size = conv_size, pooled
        self.forward = self._forward(self.params)
        self.backward = self._backward()
        self.engine_forward, self.engine_grads = self._engine(self.params)
        self.updated = {
            name: value - lr * self.backward["d" + name] for name, value in self.params.items()
        }
        self.loss_after = float(self._forward(self.updated)["E"])
        engine_after, _ = self._engine(self.updated)
        self.engine_loss_after = float(engine_after["E"])
        self._verification = self._verify()

    # ----------------------------------------------------------------------- by hand
    def _forward(self, params: dict[str, np.ndarray]) -> dict[str, Any]:
        x = self.input
        z = np.stack(
            [_correlate_valid(x, params["w1"][f, 0]) + params["b1"][f] for f in range(self.filters)]
        )
        y, slope = _activation(self.activation, z)
        u, argmax = _max_pool(y, self.pool)
        v = u.reshape(-1)
        s = params["W2"] @ v + params["b2"]
        shifted = np.exp(s - s.max())
        p = shifted / shifted.sum()
        return {
            "x": x,
            "z": z,
            "y": y,
            "slope": slope,
            "u": u,
            "argmax": argmax,
            "v": v,
            "s": s,
            "p": p,
            "E": -np.log(p[self.target]),
        }

    def _backward(self) -> dict[str, np.ndarray]:
        fw, params = self.forward, self.params
        onehot = np.eye(self.classes)[self.target]
        ds = fw["p"] - onehot
        dW2 = np.outer(ds, fw["v"])
        db2 = ds
        dv = params["W2"].T @ ds
        du = dv.reshape(fw["u"].shape)
        dy = _route_max(du, fw["argmax"], fw["y"].shape, self.pool)
        dz = dy * fw["slope"]
        dw1 = np.stack([_correlate_valid(fw["x"], dz[f])[np.newaxis] for f in range(self.filters)])
        db1 = dz.sum(axis=(1, 2))
        k = self.kernel
        dx = sum(
            _correlate_valid(np.pad(dz[f], k - 1), params["w1"][f, 0, ::-1, ::-1])
            for f in range(self.filters)
        )
        return {
            "ds": ds,
            "dW2": dW2,
            "db2": db2,
            "dv": dv,
            "du": du,
            "dy": dy,
            "dz": dz,
            "dw1": dw1,
            "db1": db1,
            "dx": dx,
        }

    # ----------------------------------------------------------------------- engine
    def _engine(self, params: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
        import convprop
        from convprop import Tensor
        from convprop.nn import functional as F

        x = Tensor(self.input[np.newaxis, np.newaxis].copy(), requires_grad=True)
        leaves = {name: Tensor(value.copy(), requires_grad=True) for name, value in params.items()}
        z = F.conv2d(x, leaves["w1"], leaves["b1"])
        y = {"relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh}[self.activation](z)
        u: Tensor = F.max_pool2d(y, self.pool)  # type: ignore[assignment]  # no indices
        v = u.flatten(1)
        s = F.linear(v, leaves["W2"], leaves["b2"])
        for tensor in (z, y, u, v, s):
            tensor.retain_grad()
        loss = F.cross_entropy(s, convprop.tensor(np.array([self.target])))
        loss.backward()

        def grad(tensor: Tensor) -> np.ndarray:
            assert tensor.grad is not None
            return tensor.grad.numpy()

        forward = {
            "z": z.numpy()[0],
            "y": y.numpy()[0],
            "u": u.numpy()[0],
            "v": v.numpy()[0],
            "s": s.numpy()[0],
            "E": float(loss.item()),
        }
        grads = {
            "ds": grad(s)[0],
            "dv": grad(v)[0],
            "du": grad(u)[0],
            "dy": grad(y)[0],
            "dz": grad(z)[0],
            "dx": grad(x)[0, 0],
        }
        grads.update({"d" + name: grad(leaf) for name, leaf in leaves.items()})
        return forward, grads

    def _verify(self) -> render.Verification:
        details = {
            key: max_diff(self.forward[key], self.engine_forward[key])
            for key in ("z", "y", "u", "v", "s", "E")
        }
        details.update(
            {key: max_diff(self.backward[key], self.engine_grads[key]) for key in self.backward}
        )
        details["E after the step"] = abs(self.loss_after - self.engine_loss_after)
        return render.Verification(
            "the forward values, the hand-derived deltas dE/ds, dE/dv, dE/du, dE/dy, dE/dz, "
            "dE/dx and the weight gradients (NumPy, the notes' formulas)",
            "the engine's (convprop.nn.functional, Tensor.retain_grad)",
            max(details.values()),
            seed=self.seed,
            details=details,
            at=f"on the seeded network (seed {self.seed})",
        )

    @property
    def verification(self) -> render.Verification:
        return self._verification

    # ----------------------------------------------------------------------- document
    def _maps(self, title: str, maps: np.ndarray) -> list[Grid]:
        return [
            Grid(f"{title} (map {f + 1})", maps[f].astype(object)) for f in range(maps.shape[0])
        ]

    def _architecture(self) -> str:
        h, w = self.input.shape
        c = self.conv_size
        p = self.pooled_size
        flat = self.filters * p[0] * p[1]
        k = self.kernel
        return (
            f"x ({h}x{w}) -> conv, {self.filters} filters {k}x{k} + bias -> z ({self.filters}x"
            f"{c[0]}x{c[1]}) -> {self.activation} -> y -> max pool {self.pool}x{self.pool} -> "
            f"u ({self.filters}x{p[0]}x{p[1]}) -> flatten -> v ({flat}) -> linear {flat}->"
            f"{self.classes} -> s ({self.classes}) -> softmax -> p -> cross-entropy with "
            f"target class d = {self.target + 1} -> E"
        )

    def blocks(self) -> list[render.Block]:
        return [
            *self._forward_blocks(),
            *self._backward_blocks(),
            *self._update_blocks(),
            self.verification,
        ]

    def _forward_blocks(self) -> list[render.Block]:
        fw = self.forward
        out: list[render.Block] = [
            Heading("A tiny CNN, layer by layer (deck 004's shape)", 1),
            Para(self._architecture() + "."),
            Para(f"Seeded numbers (seed {self.seed}); classes are numbered from 1."),
            Heading("Forward pass"),
            Grid("input x", fw["x"].astype(object)),
        ]
        for f in range(self.filters):
            out.append(Grid(f"filter w (map {f + 1})", self.params["w1"][f, 0].astype(object)))
        out.append(Grid("conv bias b", self.params["b1"].astype(object)))
        out.append(
            Para(
                "z = x correlated with each filter, plus its bias (the engine's "
                "convolution, as PyTorch):"
            )
        )
        out += self._maps("z", fw["z"])
        out.append(Para(f"y = {self.activation}(z), point-wise:"))
        out += self._maps("y", fw["y"])
        out.append(Para(f"u = {self.pool}x{self.pool} max pooling of y (windows side by side):"))
        out += self._maps("u", fw["u"])
        out.append(Para("v = u flattened (map by map, row by row); s = W v + c:"))
        out.append(Grid("v", fw["v"].astype(object)))
        out.append(Grid("W", self.params["W2"].astype(object)))
        out.append(Grid("c", self.params["b2"].astype(object)))
        out.append(Grid("s", fw["s"].astype(object)))
        out.append(Grid("p = softmax(s)", fw["p"].astype(object)))
        out.append(
            Para(
                f"E = -log p_d = -log {render.number(fw['p'][self.target])} = "
                f"{render.number(fw['E'])} (the divergence for this one training instance; deck "
                f"004 averages it over the training set).",
                f"$E = -\\log p_d = -\\log {render.number(fw['p'][self.target])} = "
                f"{render.number(fw['E'])}$ (the divergence for this one training instance; deck "
                f"004 averages it over the training set).",
            )
        )
        return out

    def _backward_blocks(self) -> list[render.Block]:
        bw = self.backward
        f_prime = {
            "relu": "f'(z) = 1 where z > 0, else 0",
            "sigmoid": "f'(z) = f(z) (1 - f(z))",
            "tanh": "f'(z) = 1 - f(z)^2",
        }[self.activation]
        out: list[render.Block] = [
            Heading("Backward pass: the local gradients, from the loss back"),
            Para(
                "Softmax and cross-entropy together: dE/ds = p - onehot(d).",
                r"Softmax and cross-entropy together: $\partial E/\partial s = p - "
                r"\mathrm{onehot}(d)$.",
            ),
            Grid("dE/ds", bw["ds"].astype(object)),
            Para(
                "The linear layer s = W v + c (deck 002's Y = WX + b): dE/dW = dE/ds v^T, "
                "dE/dc = dE/ds, and the delta passed down is dE/dv = W^T dE/ds.",
                r"The linear layer $s = Wv + c$ (deck 002's $Y = WX + b$): "
                r"$\partial E/\partial W = \frac{\partial E}{\partial s} v^T$, "
                r"$\partial E/\partial c = \partial E/\partial s$, and the delta passed down is "
                r"$\partial E/\partial v = W^T \partial E/\partial s$.",
            ),
            Grid("dE/dv", bw["dv"].astype(object)),
            Para("Flattening only unrolled the maps, so dE/du is dE/dv folded back:"),
        ]
        out += self._maps("dE/du", bw["du"])
        out.append(
            Para(
                "Max pooling sends each dE/du to the position of its window's maximum (pidx), "
                "zeros elsewhere (deck 004: dy(pidx) += dy(l)):"
            )
        )
        out += self._maps("dE/dy", bw["dy"])
        out.append(
            Para(f"Through the activation (deck 004: dDiv/dz = dDiv/dy f'(z)), with {f_prime}:")
        )
        out += self._maps("dE/dz = delta", bw["dz"])
        out.append(
            Para(
                "The filters' gradients: the correlation of the input x with each delta map "
                "(weight sharing), and the bias gradient the sum of each delta map:"
            )
        )
        for f in range(self.filters):
            out.append(Grid(f"dE/dw (map {f + 1})", bw["dw1"][f, 0].astype(object)))
        out.append(Grid("dE/db", bw["db1"].astype(object)))
        out.append(Grid("dE/dW", bw["dW2"].astype(object)))
        out.append(Grid("dE/dc", bw["db2"].astype(object)))
        out.append(
            Para(
                "And the input's gradient (what a previous layer would receive): the full "
                "correlation of each zero-padded delta map with its Rot180 filter, summed over the "
                "filters:"
            )
        )
        out.append(Grid("dE/dx", bw["dx"].astype(object)))
        return out

    def _update_blocks(self) -> list[render.Block]:
        fw = self.forward
        out: list[render.Block] = []
        out.append(Heading("One gradient-descent step"))
        out.append(
            Para(
                f"w <- w - lr dE/dw with lr = {render.number(self.lr)}, for every parameter:",
                rf"$w \leftarrow w - \eta\, \partial E/\partial w$ with "
                rf"$\eta = {render.number(self.lr)}$, for every parameter:",
            )
        )
        for f in range(self.filters):
            out.append(Grid(f"new filter w (map {f + 1})", self.updated["w1"][f, 0].astype(object)))
        out.append(Grid("new conv bias b", self.updated["b1"].astype(object)))
        out.append(Grid("new W", self.updated["W2"].astype(object)))
        out.append(Grid("new c", self.updated["b2"].astype(object)))
        change = "decreases" if self.loss_after < float(fw["E"]) else "does not decrease"
        out.append(
            Para(
                f"The loss {change}: E = {render.number(fw['E'])} before the step, "
                f"{render.number(self.loss_after)} after."
            )
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        def listed(d: dict[str, Any]) -> dict[str, Any]:
            return {
                k: (v.tolist() if isinstance(v, np.ndarray) else float(v))
                for k, v in d.items()
                if k not in ("slope", "argmax")
            }

        return {
            "kind": "network",
            "architecture": self._architecture(),
            "seed": self.seed,
            "activation": self.activation,
            "learning_rate": self.lr,
            "target": self.target,
            "parameters": listed(self.params),
            "forward": listed(self.forward),
            "pool_argmax": self.forward["argmax"].tolist(),
            "backward": listed(self.backward),
            "engine_backward": listed(self.engine_grads),
            "updated_parameters": listed(self.updated),
            "loss_before": float(self.forward["E"]),
            "loss_after": self.loss_after,
            "verification": self.verification.to_dict(),
        }


def network(
    seed: int = 0,
    activation: str = "relu",
    lr: float = 0.1,
    input_size: int | tuple[int, int] = (6, 6),
    filters: int = 2,
    kernel_size: int = 3,
    pool: int = 2,
    classes: int = 3,
    target: int | None = None,
) -> NetworkExplanation:
    """Explain a tiny CNN (conv -> activation -> max pool -> flatten -> linear -> softmax ->
    cross-entropy) on seeded numbers; ``target`` is the 0-based class index (seeded if None)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{FUNC}: seed must be a non-negative int, got {seed!r}")
    activation = choice(activation, ACTIVATIONS, FUNC, "activation")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"{FUNC}: lr must be a positive number, got {lr!r}")
    size = sizes(input_size, FUNC, "input_size", (1, 2))
    size = size * 2 if len(size) == 1 else size
    height, width = size
    filters = positive_int(filters, FUNC, "filters")
    kernel = positive_int(kernel_size, FUNC, "kernel_size")
    pool = positive_int(pool, FUNC, "pool")
    classes = positive_int(classes, FUNC, "classes")
    if classes < 2:
        raise ValueError(f"{FUNC}: classes must be at least 2, got {classes}")
    if max(size) > 12 or filters > 4 or classes > 10:
        raise ValueError(
            f"{FUNC}: the network is for reading layer by layer: input at most 12x12, at most 4 "
            f"filters and 10 classes, got input {shape_text(size)}, {filters} filters, "
            f"{classes} classes"
        )
    conv_size = [n - kernel + 1 for n in size]
    if min(conv_size) < pool:
        raise ValueError(
            f"{FUNC}: kernel_size={kernel} and pool={pool} do not fit a {shape_text(size)} "
            f"input (the convolution gives {shape_text(conv_size)} maps, smaller than the pool)"
        )
    if target is not None and not (isinstance(target, (int, np.integer)) and 0 <= target < classes):
        raise ValueError(
            f"{FUNC}: target must be a class index in 0..{classes - 1}, got {target!r}"
        )
    return NetworkExplanation(
        int(seed),
        activation,
        float(lr),
        (height, width),
        filters,
        kernel,
        pool,
        classes,
        None if target is None else int(target),
    )
