"""QHAdam: a NumPy transcription of the paper."""

import numpy as np

from ._references import NumpyReference
from ._schema import DECAY, Case, VariantTests


class QHAdam(NumpyReference):
    """Ma & Yarats, "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019, arXiv:1810.06801, section 4
    (QHAdam): g_{t+1} = b1 g_t + (1-b1) grad, s_{t+1} = b2 s_t + (1-b2) grad^2, hats divide by 1 - b^{t+1},
    theta -= alpha ((1-nu1) grad + nu1 g_hat) / (sqrt((1-nu2) grad^2 + nu2 s_hat) + eps). Coupled L2 decay as qhoptim's
    default. Defaults: the paper's recommended nu = (0.7, 1.0), beta = (0.995, 0.999)."""

    name = "qhadam"
    defaults = dict(lr=1e-3, beta1=0.995, beta2=0.999, nu1=0.7, nu2=1.0, eps=1e-8, weight_decay=0.0)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, nu1, nu2, eps, weight_decay):
        g = g + weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * (g * g)  # (1 - beta2) multiplies g^2 (the note in VARIANTS.md)
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p -= lr * ((1 - nu1) * g + nu1 * m_hat) / (np.sqrt((1 - nu2) * g * g + nu2 * v_hat) + eps)


VARIANT = VariantTests("qhadam", cases=(
    Case("qhadam-defaults", QHAdam, {}),
    Case("qhadam-decay", QHAdam, dict(lr=2e-3, beta1=0.9, beta2=0.99, nu1=0.8, nu2=0.6, eps=1e-7, **DECAY)),
))
