"""LaProp: a NumPy transcription of the paper, with and without amsgrad. The learning rate lives in the momentum, so a
schedule is part of the semantics."""

import numpy as np

from ._references import NumpyReference
from ._schema import DECAY, Case, VariantTests


class LaProp(NumpyReference):
    """Ziyin, Wang & Ueda, "LaProp: Separating Momentum and Adaptivity in Adam", arXiv:2002.04839, Algorithm 1:
    n_t = nu n + (1-nu) g^2; m_t = mu m + (1-mu) lambda_t g / (sqrt(n_t / c_n) + eps); theta -= m_t / c_m, with the
    learning rate lambda_t inside the momentum. As in the authors' code (and timm), c_m is the EMA of the learning rates
    divided by the current one and c_n the EMA of ones; amsgrad (authors' code) normalises by the running maximum of n.
    Weight decay as timm: theta -= lr*weight_decay*theta after the step."""

    name = "laprop"
    defaults = dict(lr=4e-4, beta1=0.9, beta2=0.999, eps=1e-15, weight_decay=0.0)
    amsgrad = False

    def __init__(self):
        self.state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0, **({"max_exp_avg_sq": 0.0} if self.amsgrad else {})}

    def init(self, param):
        return {**super().init(param), "lr_average": 0.0, "one_average": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay):
        m, n = state["exp_avg"], state["exp_avg_sq"]
        n[...] = beta2 * n + (1 - beta2) * g * g
        state["lr_average"] = beta1 * state["lr_average"] + (1 - beta1) * lr
        state["one_average"] = beta2 * state["one_average"] + (1 - beta2)
        c_m = state["lr_average"] / lr if lr != 0 else 1.0
        c_n = state["one_average"]
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], n, out=state["max_exp_avg_sq"])
            n = state["max_exp_avg_sq"]
        m[...] = beta1 * m + (1 - beta1) * lr * g / (np.sqrt(n / c_n) + eps)
        p -= m / c_m
        p -= lr * weight_decay * p

    def states(self, state):
        return {**super().states(state), "exp_avg_lr_1": state["lr_average"], "exp_avg_lr_2": state["one_average"]}


class LaPropAmsgrad(LaProp):
    """LaProp normalised by the running maximum of n (the authors' amsgrad)."""

    name = "laprop_amsgrad"
    amsgrad = True


VARIANT = VariantTests("laprop", cases=(
    Case("laprop-defaults", LaProp, {}),
    Case("laprop-decay-schedule", LaProp, dict(lr=1e-3, beta1=0.8, beta2=0.99, eps=1e-10, **DECAY), schedule=True),
    Case("laprop_amsgrad-decay", LaPropAmsgrad, dict(lr=1e-3, beta1=0.85, beta2=0.95, **DECAY),
         options={"amsgrad": True}, schedule=True),
))
