"""StableAdamW: a NumPy transcription of the paper and torch-optimi's StableAdamW; optimi also checks decouple_lr."""

import math

import numpy as np
import pytest

from ._references import NumpyReference, TorchReference
from ._schema import DECAY, DECOUPLE_LR_DECAY, Case, VariantTests


class StableAdamW(NumpyReference):
    """Wortsman et al., "Stable and low-precision training for large-scale vision-language models", arXiv:2304.13013,
    Algorithm 2 (StableAdamW): debiased betas beta_hat = beta (1 - beta^(t-1)) / (1 - beta^t), so the moments are
    bias-corrected; eta_t = eta / max(1, RMS(g^2 / max(v, eps^2))); x -= eta_t (m / (sqrt(v) + eps) + lambda x)."""

    name = "stableadamw"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.99, eps=1e-6, weight_decay=1e-2)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        beta1_hat = beta1 * (1 - beta1 ** (t - 1)) / (1 - beta1**t)
        beta2_hat = beta2 * (1 - beta2 ** (t - 1)) / (1 - beta2**t)
        m[...] = beta1_hat * m + (1 - beta1_hat) * g
        v[...] = beta2_hat * v + (1 - beta2_hat) * g * g
        rms = math.sqrt(np.mean(g * g / np.maximum(v, eps * eps))) if g.size else 0.0
        lr_t = lr / max(1.0, rms)
        p -= lr_t * (m / (np.sqrt(v) + eps) + weight_decay * p)


class OptimiStableAdamW(TorchReference):
    """optimi keeps the moments bias-corrected (debiased betas), as the stableadamw spec does."""

    def make(self, tensor, h):
        optimi = pytest.importorskip("optimi")
        return optimi.StableAdamW([tensor], lr=h.get("lr", 1e-3), betas=(h.get("beta1", 0.9), h.get("beta2", 0.99)),
                                  eps=h.get("eps", 1e-6), weight_decay=h.get("weight_decay", 1e-2),
                                  kahan_sum=False, foreach=False, triton=False, **self.decouple_lr)

    def states(self, state):
        s = self.optimizer_state(state)
        return {"exp_avg": s["exp_avg"].numpy(), "exp_avg_sq": s["exp_avg_sq"].numpy()}


VARIANT = VariantTests("stableadamw", cases=(
    Case("stableadamw-defaults-numpy", StableAdamW, {}),
    Case("stableadamw-defaults-optimi", OptimiStableAdamW, {}),
    Case("stableadamw-decay-optimi", OptimiStableAdamW, dict(lr=3e-3, eps=1e-3, weight_decay=0.1), schedule=True),
    Case("stableadamw-decay-numpy", StableAdamW, dict(lr=3e-3, eps=1e-3, **DECAY), schedule=True),
    Case("stableadamw_decouple_lr-schedule-optimi", OptimiStableAdamW,
         dict(lr=3e-3, max_lr=6e-3, eps=1e-3, **DECOUPLE_LR_DECAY), options={"decouple_lr": True}, schedule=True),
))
