"""Adan: torch-optimi's Adan (debiased betas, prev_grad stored negated) and a NumPy transcription of the paper; optimi
also checks decouple_lr."""

import numpy as np
import pytest

from ._references import NumpyReference, TorchReference
from ._schema import DECAY, DECOUPLE_LR_DECAY, Case, VariantTests


class Adan(NumpyReference):
    """Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models", arXiv:2208.06677,
    Algorithm 1 in torch's beta convention (beta = 1 - the paper's beta): m = b1 m + (1-b1) g;
    v = b2 v + (1-b2)(g - g_prev); n = b3 n + (1-b3)(g + b2 (g - g_prev))^2;
    theta = (theta - eta/(sqrt(n)+eps) (m + b2 v)) / (1 + lambda eta). As the authors' code: zero-initialised moments
    with Adam's bias correction (the pseudo-code instead starts from m_0 = g_0) and g_prev = g on the first step."""

    name = "adan"
    defaults = dict(lr=1e-3, beta1=0.98, beta2=0.92, beta3=0.99, eps=1e-8, weight_decay=0.02)
    state_inits = {"exp_avg": 0.0, "exp_avg_diff": 0.0, "exp_avg_sq": 0.0, "prev_grad": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, beta3, eps, weight_decay):
        m, v, n, g_prev = state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"], state["prev_grad"]
        if t == 1:
            g_prev[...] = g
        diff = g - g_prev
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * diff
        n[...] = beta3 * n + (1 - beta3) * (g + beta2 * diff) ** 2
        eta = lr / (np.sqrt(n / (1 - beta3**t)) + eps)
        p[...] = (p - eta * (m / (1 - beta1**t) + beta2 * v / (1 - beta2**t))) / (1 + weight_decay * lr)
        g_prev[...] = g


class OptimiAdan(TorchReference):
    """optimi keeps the moments debiased (m / (1 - beta^t), through debiased betas) and prev_grad negated."""

    def make(self, tensor, h):
        optimi = pytest.importorskip("optimi")
        betas = (h.get("beta1", 0.98), h.get("beta2", 0.92), h.get("beta3", 0.99))
        return optimi.Adan([tensor], lr=h["lr"], betas=betas, eps=h["eps"], weight_decay=h.get("weight_decay", 2e-2),
                           adam_wd=False, kahan_sum=False, foreach=False, triton=False, **self.decouple_lr)

    def states(self, state):
        s, t = self.optimizer_state(state), state["step"]
        beta1, beta2, beta3 = (self.hyperparameters.get(k, d) for k, d in (("beta1", 0.98), ("beta2", 0.92),
                                                                           ("beta3", 0.99)))
        return {"exp_avg": s["exp_avg"].numpy() * (1 - beta1**t),
                "exp_avg_diff": s["exp_avg_diff"].numpy() * (1 - beta2**t),
                "exp_avg_sq": s["exp_avg_sq"].numpy() * (1 - beta3**t),
                "prev_grad": -s["prev_grad"].numpy()}


DECAYED = dict(lr=5e-3, beta1=0.9, beta2=0.85, beta3=0.95, eps=1e-6, **DECAY)

VARIANT = VariantTests("adan", cases=(
    Case("adan-defaults-numpy", Adan, {}),
    Case("adan-defaults-optimi", OptimiAdan, dict(lr=1e-3, eps=1e-8)),  # optimi: lr required, eps 1e-6
    Case("adan-decay-numpy", Adan, DECAYED, schedule=True),
    Case("adan-decay-optimi", OptimiAdan, DECAYED, schedule=True),
    Case("adan_decouple_lr-schedule-optimi", OptimiAdan, dict(lr=5e-3, max_lr=5e-3, eps=1e-6, **DECOUPLE_LR_DECAY),
         options={"decouple_lr": True}, schedule=True),
))
