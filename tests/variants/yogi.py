"""Yogi: a NumPy transcription of the paper. Its second moment moves by a sign, so near-tied elements are excused."""

import numpy as np

from ._references import NumpyReference
from ._schema import DECAY, Case, VariantTests


class Yogi(NumpyReference):
    """Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018, Algorithm 2 (YOGI):
    m_t = b1 m + (1-b1) g; v_t = v - (1-b2) sign(v - g^2) g^2; x -= eta m / (sqrt(v) + eps).
    As torch-optimizer's Yogi and optax's yogi (and unlike the paper's pseudo-code), m and v are bias corrected,
    v starts at initial_accumulator = 1e-6 (m at 0), and weight decay is coupled L2."""

    name = "yogi"
    defaults = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-3, weight_decay=0.0)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 1e-6}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay):
        g = g + weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        g2 = g * g
        self.note_ties(state, v - g2, np.abs(v) + g2)
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = v - (1 - beta2) * np.sign(v - g2) * g2
        p -= lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)


VARIANT = VariantTests("yogi", cases=(
    Case("yogi-defaults", Yogi, {}, ties=Yogi),
    Case("yogi-decay", Yogi, dict(lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-4, **DECAY), ties=Yogi),
))
