"""Schedule-free AdamW: the paper's x / z form transcribed in NumPy and the authors' schedulefree package (y / z form);
the warm-up cases warm up over 30 steps."""

import numpy as np
import pytest

from ._references import NumpyReference, TorchReference
from ._schema import DECAY, Case, VariantTests


class ScheduleFreeAdamW(NumpyReference):
    """Defazio et al., "The Road Less Scheduled", NeurIPS 2024, arXiv:2405.15682, Algorithm 1 (Schedule-Free AdamW),
    kept in its x / z form: y = (1-beta1) z + beta1 x is where the gradient is taken (the parameter), z moves by the
    AdamW step, x is the weighted average x <- (1-c) x + c z. As the authors' schedulefree.AdamWScheduleFree (which
    differs from Algorithm 1 in these details): the bias correction inside the square root, decay lambda*y added to the
    normalised gradient, warm-up lr*min(1, t/warmup_steps) and weights c = w_t / sum w, w_t = t^r * lr_max^power."""

    name = "schedulefree_adamw"
    defaults = dict(lr=2.5e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, warmup_steps=0.0, r=0.0,
                    weight_lr_power=2.0)
    state_inits = {"exp_avg_sq": 0.0}

    def states(self, state):
        return {"exp_avg_sq": state["exp_avg_sq"], "z": state["z"]}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay, warmup_steps, r, weight_lr_power):
        if t == 1:
            state["x"], state["z"], state["lr_max"], state["weight_sum"] = p.copy(), p.copy(), 0.0, 0.0
        x, z, v = state["x"], state["z"], state["exp_avg_sq"]
        y = p.copy()  # = (1-beta1) z + beta1 x, up to rounding
        lr_t = lr * (min(1.0, t / warmup_steps) if warmup_steps > 0 else 1.0)
        state["lr_max"] = max(state["lr_max"], lr_t)
        w = t**r * state["lr_max"] ** weight_lr_power
        state["weight_sum"] += w
        c = w / state["weight_sum"] if state["weight_sum"] > 0 else 0.0
        v[...] = beta2 * v + (1 - beta2) * g * g
        z -= lr_t * (g / (np.sqrt(v / (1 - beta2**t)) + eps) + weight_decay * y)
        x[...] = (1 - c) * x + c * z
        p[...] = (1 - beta1) * z + beta1 * x


class ScheduleFree(TorchReference):
    """schedulefree's AdamWScheduleFree in training mode, single-tensor path; it keeps z and exp_avg_sq as the spec."""

    def make(self, tensor, h):
        schedulefree = pytest.importorskip("schedulefree")
        h.pop("maximize", None)
        betas = (h.pop("beta1", 0.9), h.pop("beta2", 0.999))
        optimizer = schedulefree.AdamWScheduleFree([tensor], betas=betas, foreach=False, **h)
        optimizer.train()
        return optimizer

    def states(self, state):
        s = self.optimizer_state(state)
        return {"z": s["z"].numpy(), "exp_avg_sq": s["exp_avg_sq"].numpy()}


WARMUP = dict(lr=1e-2, beta1=0.95, beta2=0.99, eps=1e-6, warmup_steps=30, r=0.5, weight_lr_power=1.5, **DECAY)

VARIANT = VariantTests("schedulefree_adamw", cases=(
    Case("schedulefree_adamw-defaults-numpy", ScheduleFreeAdamW, {}),
    Case("schedulefree_adamw-defaults-package", ScheduleFree, {}),
    Case("schedulefree_adamw-warmup-numpy", ScheduleFreeAdamW, WARMUP),
    Case("schedulefree_adamw-warmup-package", ScheduleFree, WARMUP),
))
