"""ADOPT: a NumPy transcription of the paper. Clipping is active (the first steps divide by a single gradient's
magnitude); the decay case uses timm's clip_exp 0.333."""

import numpy as np

from ._references import NumpyReference
from ._schema import DECAY, Case, VariantTests


class Adopt(NumpyReference):
    """Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate", NeurIPS 2024,
    arXiv:2411.02853, Algorithm 2 with the clipped normalisation of section 4: v_0 = g_0^2; for t = 1, 2, ...:
    m_t = b1 m + (1-b1) clip(g_t / max(sqrt(v_{t-1}), eps), c_t); theta -= alpha m_t; v_t = b2 v + (1-b2) g_t^2, with
    c_t = t^(1/4). The paper's g_0 is the first gradient, so the paper's t is the call count minus one. Decoupled weight
    decay theta *= 1 - alpha*lambda on every update step (the authors' code with decouple=True)."""

    name = "adopt"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.9999, eps=1e-6, weight_decay=0.0, clip_exp=0.25)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def update(self, p, g, state, calls, lr, beta1, beta2, eps, weight_decay, clip_exp):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        t = calls - 1
        if t == 0:
            v[...] = g * g
            return
        c = t**clip_exp
        normalised = np.clip(g / np.maximum(np.sqrt(v), eps), -c, c)
        m[...] = beta1 * m + (1 - beta1) * normalised
        p *= 1 - lr * weight_decay
        p -= lr * m
        v[...] = beta2 * v + (1 - beta2) * g * g


VARIANT = VariantTests("adopt", cases=(
    Case("adopt-defaults", Adopt, {}),
    Case("adopt-decay", Adopt, dict(lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-4, clip_exp=0.333, **DECAY), schedule=True),
))
