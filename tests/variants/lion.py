"""Lion: torch-optimi's Lion and a NumPy transcription of the paper; optimi also checks decouple_lr, a transcription
the cautious form. Lion steps by a sign, so near-tied elements are excused."""

import numpy as np
import pytest

from ._references import NumpyReference, TorchReference, cautious_mask
from ._schema import DECAY, DECOUPLE_LR_DECAY, Case, VariantTests


class Lion(NumpyReference):
    """Chen et al., "Symbolic Discovery of Optimization Algorithms", arXiv:2302.06675, Algorithm 2 (Lion):
    c = b1 m + (1-b1) g; theta -= eta (sign(c) + lambda theta); m = b2 m + (1-b2) g."""

    name = "lion"
    defaults = dict(lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0)
    state_inits = {"exp_avg": 0.0}
    cautious = False

    def update(self, p, g, state, t, lr, beta1, beta2, weight_decay):
        m = state["exp_avg"]
        c = beta1 * m + (1 - beta1) * g
        self.note_ties(state, c, np.abs(beta1 * m) + np.abs((1 - beta1) * g))
        u = np.sign(c)
        if self.cautious:  # the decay is not masked
            u = u * cautious_mask(state, u, g)
        p -= lr * (u + weight_decay * p)
        m[...] = beta2 * m + (1 - beta2) * g


class CautiousLion(Lion):
    """Lion with the cautious mask on sign(c)."""

    name = "clion"
    cautious = True


class OptimiLion(TorchReference):
    def make(self, tensor, h):
        optimi = pytest.importorskip("optimi")
        return optimi.Lion([tensor], lr=h["lr"], betas=(h.get("beta1", 0.9), h.get("beta2", 0.99)),
                           weight_decay=h.get("weight_decay", 0.0), foreach=False, triton=False, **self.decouple_lr)

    def states(self, state):
        return {"exp_avg": self.optimizer_state(state)["exp_avg"].numpy()}


CAUTIOUS = {"cautious": True}
DECAYED = dict(lr=3e-4, beta1=0.95, beta2=0.98, **DECAY)

VARIANT = VariantTests("lion", cases=(
    Case("lion-defaults-numpy", Lion, {}, ties=Lion),
    Case("lion-defaults-optimi", OptimiLion, dict(lr=1e-4), ties=Lion),  # optimi: lr required
    Case("lion-decay-numpy", Lion, DECAYED, schedule=True, ties=Lion),
    Case("lion-decay-optimi", OptimiLion, DECAYED, schedule=True, ties=Lion),
    Case("lion_decouple_lr-schedule-optimi", OptimiLion, dict(lr=3e-4, max_lr=3e-4, beta1=0.95, **DECOUPLE_LR_DECAY),
         options={"decouple_lr": True}, schedule=True, ties=Lion),
    Case("clion-lr", CautiousLion, dict(lr=1e-3), options=CAUTIOUS, ties=CautiousLion),
    Case("clion-decay", CautiousLion, dict(lr=3e-4, **DECAY), options=CAUTIOUS, schedule=True, ties=CautiousLion),
    Case("clion_decouple_lr", None, dict(max_lr=2e-4, **DECOUPLE_LR_DECAY), options={**CAUTIOUS, "decouple_lr": True},
         reason="a combination of options each checked against a reference on its own: decouple_lr "
                "(lion_decouple_lr, optimi.Lion), cautious (clion, NumPy)"),
), on_demand=({"corrected_weight_decay": True, "cautious_weight_decay": True},))
