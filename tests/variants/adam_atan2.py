"""Adam-atan2: a NumPy transcription of the paper and lucidrains' adam-atan2-pytorch package."""

import numpy as np
import pytest

from ._references import NumpyReference, TorchReference
from ._schema import DECAY, Case, VariantTests


class AdamAtan2(NumpyReference):
    """Everett et al., "Scaling Exponents Across Parameterizations and Optimizers", ICML 2024, arXiv:2407.05872,
    Adam-atan2: theta -= eta a atan2(m_hat, b sqrt(v_hat)) with a = 1.27, b = 1 and Adam's moments; decoupled weight
    decay theta *= 1 - eta*lambda first, as AdamW."""

    name = "adam_atan2"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, a=1.27, b=1.0)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, weight_decay, a, b):
        p *= 1 - lr * weight_decay
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * g * g
        p -= lr * a * np.arctan2(m / (1 - beta1**t), b * np.sqrt(v / (1 - beta2**t)))


class LucidrainsAdamAtan2(TorchReference):
    """adam-atan2-pytorch's AdamAtan2 (weight decay p *= 1 - lr*wd, as the spec; its own defaults differ: lr 1e-4,
    beta2 0.99, so every hyperparameter is passed)."""

    def make(self, tensor, h):
        adam_atan2_pytorch = pytest.importorskip("adam_atan2_pytorch")
        return adam_atan2_pytorch.AdamAtan2([tensor], lr=h.get("lr", 1e-3), betas=(h.get("beta1", 0.9),
                                            h.get("beta2", 0.999)), weight_decay=h.get("weight_decay", 0.0),
                                            a=h.get("a", 1.27), b=h.get("b", 1.0))

    def states(self, state):
        s = self.optimizer_state(state)
        return {"exp_avg": s["exp_avg"].numpy(), "exp_avg_sq": s["exp_avg_sq"].numpy()}


DECAYED = dict(lr=2e-3, beta1=0.85, beta2=0.99, a=1.5, b=0.8, **DECAY)

VARIANT = VariantTests("adam_atan2", cases=(
    Case("adam_atan2-defaults", AdamAtan2, {}),
    Case("adam_atan2-decay", AdamAtan2, DECAYED, schedule=True),
    Case("adam_atan2-defaults-package", LucidrainsAdamAtan2, {}),
    Case("adam_atan2-decay-package", LucidrainsAdamAtan2, DECAYED, schedule=True),
))
