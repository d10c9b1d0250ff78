"""Adam-mini: a NumPy transcription of the paper's rule for one block (here, a whole tensor); test_adam_mini.py
drives adamgen.torch.AdamMini, whose param groups split tensors into heads, neurons and elements, against the
authors' Adam_mini (``adam-mini``)."""

import numpy as np

from ._references import NumpyReference
from ._schema import DECAY, Case, VariantTests


class AdamMini(NumpyReference):
    """Zhang et al., "Adam-mini: Use Fewer Learning Rates To Gain More", arXiv:2406.16793, Algorithm 1 for one block
    with the authors' bias corrections: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) mean(g^2) (one value for the block);
    x *= 1 - lr wd; x -= lr (m / (1 - b1^t)) / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    name = "adam_mini"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
    state_inits = {"exp_avg": 0.0}

    def init(self, param):
        state = super().init(param)
        state["vmean"] = 0.0
        return state

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay):
        m = state["exp_avg"]
        m[...] = beta1 * m + (1 - beta1) * g
        state["vmean"] = beta2 * state["vmean"] + (1 - beta2) * (float(np.mean(g * g)) if g.size else 0.0)
        p *= 1 - lr * weight_decay
        p -= lr * (m / (1 - beta1**t)) / (np.sqrt(state["vmean"]) / np.sqrt(1 - beta2**t) + eps)

    def states(self, state):
        return {"exp_avg": state["exp_avg"], "vmean": state["vmean"]}


VARIANT = VariantTests("adam_mini", cases=(
    Case("adam_mini-defaults", AdamMini, {}),
    Case("adam_mini-decay", AdamMini, dict(lr=3e-3, beta1=0.8, **DECAY), schedule=True),
))
