"""MARS: a NumPy transcription of the paper (MARS-AdamW)."""

import numpy as np

from ._references import NumpyReference
from ._schema import DECAY, Case, VariantTests


class Mars(NumpyReference):
    """Yuan et al., "MARS: Unleashing the Power of Variance Reduction for Training Large Models", arXiv:2411.10438,
    Algorithm 2 (MARS-AdamW): c = g + gamma beta1/(1-beta1) (g - g_prev), c /= |c| if |c| > 1, AdamW moments of c,
    x -= eta (m_hat / (sqrt(v_hat) + eps) + lambda x); g_prev starts at 0."""

    name = "mars"
    defaults = dict(lr=3e-3, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0, gamma=0.025)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0, "prev_grad": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay, gamma):
        m, v, prev = state["exp_avg"], state["exp_avg_sq"], state["prev_grad"]
        c = g + gamma * beta1 / (1 - beta1) * (g - prev)
        norm = np.linalg.norm(c)
        if norm > 1:
            c = c / norm
        m[...] = beta1 * m + (1 - beta1) * c
        v[...] = beta2 * v + (1 - beta2) * c * c
        prev[...] = g
        p -= lr * ((m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps) + weight_decay * p)


VARIANT = VariantTests("mars", cases=(
    Case("mars-defaults", Mars, {}),
    Case("mars-decay", Mars, dict(gamma=0.1, **DECAY), schedule=True),
))
