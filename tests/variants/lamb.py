"""LAMB: a NumPy transcription of the paper (with timm's trust ratio), with and without the cautious mask."""

import numpy as np

from ._references import NumpyReference, cautious_mask
from ._schema import Case, VariantTests


class Lamb(NumpyReference):
    """You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", arXiv:1904.00962,
    Algorithm 2 (LAMB) with bias correction, phi = identity, and timm's trust ratio (1 when either norm is 0, and,
    unless always_adapt, for a tensor without weight decay: timm's and apex's default):
    r = m_hat / (sqrt(v_hat) + eps) + lambda x; x -= eta |x| / |r| r."""

    name = "lamb"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01, always_adapt=False)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0}
    cautious = False

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay, always_adapt):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * g * g
        r = (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        if self.cautious:
            r = r * cautious_mask(state, r, g)
        r = r + weight_decay * p
        p_norm, r_norm = np.linalg.norm(p), np.linalg.norm(r)
        adapt = always_adapt or weight_decay != 0
        trust = p_norm / r_norm if adapt and p_norm > 0 and r_norm > 0 else 1.0
        p -= lr * trust * r


class CautiousLamb(Lamb):
    """LAMB with the cautious mask on the Adam ratio, before the decay term and the trust ratio."""

    name = "clamb"
    cautious = True


CAUTIOUS = {"cautious": True}

VARIANT = VariantTests("lamb", cases=(
    Case("lamb-defaults", Lamb, {}),
    Case("lamb-decay", Lamb, dict(lr=3e-3, beta1=0.8, weight_decay=0.1, maximize=True), schedule=True),
    Case("lamb-no-decay", Lamb, dict(lr=3e-3, weight_decay=0.0)),  # no trust ratio: Adam's step
    Case("lamb-always-adapt", Lamb, dict(lr=3e-3, weight_decay=0.0, always_adapt=True)),
    Case("clamb-defaults", CautiousLamb, {}, options=CAUTIOUS, ties=CautiousLamb),
    Case("clamb-decay", CautiousLamb, dict(weight_decay=0.1, maximize=True), options=CAUTIOUS, ties=CautiousLamb),
), on_demand=({"clip_grad_norm": True}, {"master_weights": True}))
