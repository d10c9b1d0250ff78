"""AdamW (Loshchilov & Hutter, arXiv:1711.05101): torch.optim.AdamW is its twin, with and without amsgrad; optimi's
AdamW checks decouple_lr, a NumPy transcription the cautious form. The other option sets combine options that are each
checked on their own."""

import numpy as np
import pytest

from ._references import NumpyReference, TorchReference, cautious_mask
from ._schema import ADAM_STATES, AMSGRAD_STATES, DECAY, DECOUPLE_LR_DECAY, VS_TORCH, Case, TorchOptim, VariantTests


class CautiousAdamW(NumpyReference):
    """AdamW (Loshchilov & Hutter, arXiv:1711.05101, Algorithm 2) with the cautious mask on the Adam step; the decay
    x *= 1 - eta lambda is not masked."""

    name = "cadamw"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * g * g
        u = (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        p *= 1 - lr * weight_decay
        p -= lr * u * cautious_mask(state, u, g)


class OptimiAdamW(TorchReference):
    """optimi keeps the moments bias-corrected (debiased betas); torch.optim's exp_avg is m = m_hat * (1 - beta^t)."""

    def make(self, tensor, h):
        optimi = pytest.importorskip("optimi")
        h.pop("maximize", None)
        return optimi.AdamW([tensor], lr=h.get("lr", 1e-3), betas=(h.get("beta1", 0.9), h.get("beta2", 0.999)),
                            eps=h.get("eps", 1e-8), weight_decay=h.get("weight_decay", 1e-2), kahan_sum=False,
                            foreach=False, triton=False, **self.decouple_lr)

    def states(self, state):
        s, t = self.optimizer_state(state), state["step"]
        beta1, beta2 = self.hyperparameters.get("beta1", 0.9), self.hyperparameters.get("beta2", 0.999)
        return {"exp_avg": s["exp_avg"].numpy() * (1 - beta1**t),
                "exp_avg_sq": s["exp_avg_sq"].numpy() * (1 - beta2**t)}


CAUTIOUS = {"cautious": True}
DECOUPLE = {"decouple_lr": True}
EACH_ON_ITS_OWN = ("a combination of options each checked against a reference on its own: amsgrad (adamw_amsgrad, "
                   "torch.optim.AdamW), decouple_lr (adamw_decouple_lr, optimi.AdamW), cautious (cadamw, NumPy)")

VARIANT = VariantTests("adamw", cases=(
    Case("adamw", TorchOptim("AdamW", {"amsgrad": False}, ADAM_STATES), {"maximize": True}, tolerance=VS_TORCH),
    Case("adamw_amsgrad", TorchOptim("AdamW", {"amsgrad": True}, AMSGRAD_STATES), {"weight_decay": 0.05},
         options={"amsgrad": True}, tolerance=VS_TORCH),
    Case("adamw_decouple_lr-defaults-optimi", OptimiAdamW, {}, options=DECOUPLE),
    Case("adamw_decouple_lr-schedule-optimi", OptimiAdamW, dict(lr=3e-3, max_lr=4e-3, **DECOUPLE_LR_DECAY),
         options=DECOUPLE, schedule=True),
    Case("cadamw-defaults", CautiousAdamW, {}, options=CAUTIOUS, ties=CautiousAdamW),
    Case("cadamw-decay", CautiousAdamW, dict(lr=3e-3, **DECAY), options=CAUTIOUS, schedule=True, ties=CautiousAdamW),
    Case("cadamw_amsgrad", None, dict(**DECAY), options={"amsgrad": True, **CAUTIOUS}, reason=EACH_ON_ITS_OWN),
    Case("adamw_amsgrad_decouple_lr", None, dict(max_lr=2e-3, **DECOUPLE_LR_DECAY),
         options={"amsgrad": True, **DECOUPLE}, reason=EACH_ON_ITS_OWN),
    Case("cadamw_decouple_lr", None, dict(max_lr=2e-3, **DECOUPLE_LR_DECAY), options={**CAUTIOUS, **DECOUPLE},
         reason=EACH_ON_ITS_OWN),
    Case("cadamw_amsgrad_decouple_lr", None, dict(max_lr=2e-3, **DECOUPLE_LR_DECAY),
         options={"amsgrad": True, **CAUTIOUS, **DECOUPLE}, reason=EACH_ON_ITS_OWN),
), on_demand=({"kahan": True}, {"stochastic_rounding": True}, {"master_weights": True}))  # test_low_precision.py
