"""AdaBelief: a NumPy transcription of the paper and the official adabelief-pytorch package (rectify=False)."""

import numpy as np
import pytest

from ._references import NumpyReference, TorchReference
from ._schema import DECAY, Case, VariantTests


class AdaBelief(NumpyReference):
    """Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients", NeurIPS 2020,
    arXiv:2010.07468, Algorithm 2 (lines: m_t, s_t = b2 s + (1-b2)(g - m_t)^2 + eps, bias correction, update
    theta - alpha m_hat / (sqrt(s_hat) + eps)), with the official package's default decoupled decay
    (weight_decouple=True: theta *= 1 - lr*weight_decay before the step)."""

    name = "adabelief"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-16, weight_decay=0.0)
    state_inits = {"exp_avg": 0.0, "exp_avg_var": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay):
        p *= 1.0 - lr * weight_decay
        m, s = state["exp_avg"], state["exp_avg_var"]
        m[...] = beta1 * m + (1 - beta1) * g
        s[...] = beta2 * s + (1 - beta2) * (g - m) ** 2 + eps
        m_hat = m / (1 - beta1**t)
        s_hat = s / (1 - beta2**t)
        p -= lr * m_hat / (np.sqrt(s_hat) + eps)


class OfficialAdaBelief(TorchReference):
    """adabelief-pytorch 0.2 with rectify=False and its default decoupled decay (weight_decouple=True)."""

    def make(self, tensor, h):
        adabelief_pytorch = pytest.importorskip("adabelief_pytorch")
        h.pop("maximize", None)
        betas = (h.pop("beta1", 0.9), h.pop("beta2", 0.999))
        return adabelief_pytorch.AdaBelief([tensor], betas=betas, rectify=False, weight_decouple=True,
                                           fixed_decay=False, amsgrad=False, print_change_log=False, **h)

    def states(self, state):
        s = self.optimizer_state(state)
        return {"exp_avg": s["exp_avg"].numpy(), "exp_avg_var": s["exp_avg_var"].numpy()}


DECAYED = dict(lr=3e-3, beta1=0.85, beta2=0.995, eps=1e-12, **DECAY)

VARIANT = VariantTests("adabelief", cases=(
    Case("adabelief-defaults-numpy", AdaBelief, {}),
    Case("adabelief-defaults-official", OfficialAdaBelief, {}),
    Case("adabelief-decay-numpy", AdaBelief, DECAYED),
    Case("adabelief-decay-official", OfficialAdaBelief, DECAYED, schedule=True),
))
