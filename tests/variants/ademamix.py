"""AdEMAMix: a NumPy transcription of the paper, with and without the alpha / beta3 warm-ups (both still running at
step 10, both over by step 100)."""

import math

import numpy as np

from ._references import NumpyReference
from ._schema import DECAY, Case, VariantTests


class AdEMAMix(NumpyReference):
    """Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", arXiv:2409.03137, Algorithm 1:
    m1 = b1 m1 + (1-b1) g; m2 = b3(t) m2 + (1-b3(t)) g; nu = b2 nu + (1-b2) g^2;
    theta -= eta ((m1_hat + alpha(t) m2) / (sqrt(nu_hat) + eps) + lambda theta), with the schedulers of section 3:
    alpha(t) = min(t alpha / T_alpha, alpha) and
    beta3(t) = min(exp(ln(b1) ln(b3) / ((1 - t/T) ln(b3) + t/T ln(b1))), b3), which interpolates the half-life linearly.
    The authors' code adds 1e-8 to beta inside the logarithm; so does this transcription. A warm-up length of 0 means
    no warm-up (the code's None)."""

    name = "ademamix"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, beta3=0.9999, alpha=5.0, alpha_warmup=0.0, beta3_warmup=0.0,
                    eps=1e-8, weight_decay=0.0)
    state_inits = {"exp_avg": 0.0, "exp_avg_slow": 0.0, "exp_avg_sq": 0.0}

    @staticmethod
    def schedules(t, beta1, beta3, alpha, alpha_warmup, beta3_warmup):
        alpha_t = min(t * alpha / alpha_warmup, alpha) if alpha_warmup > 0 else alpha
        if beta3_warmup > 0:
            log1, log3 = math.log(beta1 + 1e-8), math.log(beta3 + 1e-8)
            a = t / beta3_warmup
            beta3_t = min(math.exp(log1 * log3 / ((1 - a) * log3 + a * log1)), beta3)
        else:
            beta3_t = beta3
        return alpha_t, beta3_t

    def update(self, p, g, state, t, lr, beta1, beta2, beta3, alpha, alpha_warmup, beta3_warmup, eps, weight_decay):
        alpha_t, beta3_t = self.schedules(t, beta1, beta3, alpha, alpha_warmup, beta3_warmup)
        m1, m2, nu = state["exp_avg"], state["exp_avg_slow"], state["exp_avg_sq"]
        m1[...] = beta1 * m1 + (1 - beta1) * g
        m2[...] = beta3_t * m2 + (1 - beta3_t) * g
        nu[...] = beta2 * nu + (1 - beta2) * g * g
        m1_hat = m1 / (1 - beta1**t)
        nu_hat = nu / (1 - beta2**t)
        p -= lr * ((m1_hat + alpha_t * m2) / (np.sqrt(nu_hat) + eps) + weight_decay * p)


VARIANT = VariantTests("ademamix", cases=(
    Case("ademamix-defaults", AdEMAMix, {}),
    Case("ademamix-warmup", AdEMAMix, dict(lr=2e-3, beta1=0.8, beta2=0.99, beta3=0.999, alpha=8.0, alpha_warmup=60,
                                           beta3_warmup=80, eps=1e-7, **DECAY)),
))
