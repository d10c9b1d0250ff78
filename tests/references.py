"""Independent float64 NumPy implementations of the catalogue variants, written from each paper's pseudo-code.

Each class has the interface of a generated module, ``init(param)`` and ``step(param, grad, state, **hyperparameters)``
(in place, float64), with adamgen's hyperparameter names, and ``states(state)``, the state arrays under adamgen's names
for comparison. Nothing here reads adamgen: defaults and formulas are typed in again from the papers and the reference
code they name, so a wrong coefficient, sign, order of updates or default in a spec shows up as a disagreement.

Where the adamgen spec deliberately follows a reference implementation rather than the paper (bias correction, weight
decay, initialisation), the class says so and does the same; the spec's ``doc`` documents the choice.
"""

from __future__ import annotations

import math

import numpy as np


class Reference:
    """Common plumbing: hyperparameter defaults, maximize, state creation."""

    name = ""
    defaults: dict = {}
    state_inits: dict = {}  # state name -> initial value of every element

    def init(self, param):
        state = {"step": 0, "near_tie": np.zeros(np.shape(param), bool)}
        state.update((name, np.full(np.shape(param), value, np.float64)) for name, value in self.state_inits.items())
        return state

    def step(self, param, grad, state, **hyperparameters):
        unknown = set(hyperparameters) - set(self.defaults) - {"maximize"}
        if unknown:
            raise TypeError(f"{self.name}: unknown hyperparameter(s) {sorted(unknown)}")
        h = {**self.defaults, **hyperparameters}
        g = -grad if h.pop("maximize", False) else grad
        state["step"] += 1
        self.update(param, g.astype(np.float64), state, state["step"], **h)

    def update(self, p, g, state, t, **h):
        raise NotImplementedError

    def states(self, state) -> dict:
        return {name: state[name] for name in self.state_inits}

    @staticmethod
    def note_ties(state, argument, scale):
        """Record the elements where a sign decision was taken on an argument within TIE of zero, relative to the size
        of the terms it was computed from: a float32 kernel, whose inputs carry a relative error of ~1e-6
        after 100 steps, may decide such an element the other way (Lion: a step of 2*lr; Yogi: a jump of
        2*(1-beta2)*grad^2 in exp_avg_sq). Tests excuse disagreements at those elements, and only there."""
        state["near_tie"] |= np.abs(argument) <= TIE * scale


TIE = 1e-5


class AdaBelief(Reference):
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


class Yogi(Reference):
    """Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018, Algorithm 2 (YOGI):
    m_t = b1 m + (1-b1) g; v_t = v - (1-b2) sign(v - g^2) g^2; x -= eta m / (sqrt(v) + eps).
    As torch-optimizer's Yogi and optax's yogi (and unlike the paper's pseudo-code), m and v are bias corrected,
    v starts at initial_accumulator = 1e-6 (m at 0), and weight decay is coupled L2."""

    name = "yogi"
    defaults = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-3, weight_decay=0.0)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 1e-6}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay):
        g = g + weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        g2 = g * g
        self.note_ties(state, v - g2, np.abs(v) + g2)
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = v - (1 - beta2) * np.sign(v - g2) * g2
        p -= lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)


class QHAdam(Reference):
    """Ma & Yarats, "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019, arXiv:1810.06801, section 4
    (QHAdam): g_{t+1} = b1 g_t + (1-b1) grad, s_{t+1} = b2 s_t + (1-b2) grad^2, hats divide by 1 - b^{t+1},
    theta -= alpha ((1-nu1) grad + nu1 g_hat) / (sqrt((1-nu2) grad^2 + nu2 s_hat) + eps). Coupled L2 decay as qhoptim's
    default. Defaults: the paper's recommended nu = (0.7, 1.0), beta = (0.995, 0.999)."""

    name = "qhadam"
    defaults = dict(lr=1e-3, beta1=0.995, beta2=0.999, nu1=0.7, nu2=1.0, eps=1e-8, weight_decay=0.0)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, nu1, nu2, eps, weight_decay):
        g = g + weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * (g * g)  # (1 - beta2) multiplies g^2 (the note in VARIANTS.md)
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p -= lr * ((1 - nu1) * g + nu1 * m_hat) / (np.sqrt((1 - nu2) * g * g + nu2 * v_hat) + eps)


class LaProp(Reference):
    """Ziyin, Wang & Ueda, "LaProp: Separating Momentum and Adaptivity in Adam", arXiv:2002.04839, Algorithm 1:
    n_t = nu n + (1-nu) g^2; m_t = mu m + (1-mu) lambda_t g / (sqrt(n_t / c_n) + eps); theta -= m_t / c_m, with the
    learning rate lambda_t inside the momentum. As in the authors' code (and timm), c_m is the EMA of the learning rates
    divided by the current one and c_n the EMA of ones; amsgrad (authors' code) normalises by the running maximum of n.
    Weight decay as timm: theta -= lr*weight_decay*theta after the step."""

    name = "laprop"
    defaults = dict(lr=4e-4, beta1=0.9, beta2=0.999, eps=1e-15, weight_decay=0.0)

    def __init__(self, amsgrad: bool = False):
        self.amsgrad = amsgrad
        self.state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0, **({"max_exp_avg_sq": 0.0} if amsgrad else {})}

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


class Adan(Reference):
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


class Lion(Reference):
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


class Adopt(Reference):
    """Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate", NeurIPS 2024,
    arXiv:2411.02853, Algorithm 2 with the clipped normalisation of section 4: v_0 = g_0^2; for t = 1, 2, ...:
    m_t = b1 m + (1-b1) clip(g_t / max(sqrt(v_{t-1}), eps), c_t); theta -= alpha m_t; v_t = b2 v + (1-b2) g_t^2, with
    c_t = t^(1/4). The paper's g_0 is the first gradient, so the paper's t is the call count minus one. Decoupled weight
    decay theta *= 1 - alpha*lambda on every update step (the authors' code with decouple=True)."""

    name = "adopt"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.9999, eps=1e-6, weight_decay=0.0, clip_exp=0.25)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def update(self, p, g, state, calls, lr, beta1, beta2, eps, weight_decay, clip_exp):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        t = calls - 1
        if t == 0:
            v[...] = g * g
            return
        c = t**clip_exp
        normalised = np.clip(g / np.maximum(np.sqrt(v), eps), -c, c)
        m[...] = beta1 * m + (1 - beta1) * normalised
        p *= 1 - lr * weight_decay
        p -= lr * m
        v[...] = beta2 * v + (1 - beta2) * g * g


class AdEMAMix(Reference):
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


class AdamAtan2(Reference):
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


class ScheduleFreeAdamW(Reference):
    """Defazio et al., "The Road Less Scheduled", NeurIPS 2024, arXiv:2405.15682, Algorithm 1 (Schedule-Free AdamW),
    kept in its x / z form: y = (1-beta1) z + beta1 x is where the gradient is taken (the parameter), z moves by the
    AdamW step, x is the weighted average x <- (1-c) x + c z. As the authors' schedulefree.AdamWScheduleFree (which
    differs from Algorithm 1 in these details): the bias correction inside the square root, decay lambda*y added to the
    normalised gradient, warm-up lr*min(1, t/warmup_steps) and weights c = w_t / sum w, w_t = t^r * lr_max^power."""

    name = "schedulefree_adamw"
    defaults = dict(lr=2.5e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, warmup_steps=0.0, r=0.0,
                    weight_lr_power=2.0)
    state_inits = {"exp_avg_sq": 0.0}

    def states(self, state):
        return {"exp_avg_sq": state["exp_avg_sq"], "z": state["z"]}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay, warmup_steps, r, weight_lr_power):
        if t == 1:
            state["x"], state["z"], state["lr_max"], state["weight_sum"] = p.copy(), p.copy(), 0.0, 0.0
        x, z, v = state["x"], state["z"], state["exp_avg_sq"]
        y = p.copy()  # = (1-beta1) z + beta1 x, up to rounding
        lr_t = lr * (min(1.0, t / warmup_steps) if warmup_steps > 0 else 1.0)
        state["lr_max"] = max(state["lr_max"], lr_t)
        w = t**r * state["lr_max"] ** weight_lr_power
        state["weight_sum"] += w
        c = w / state["weight_sum"] if state["weight_sum"] > 0 else 0.0
        v[...] = beta2 * v + (1 - beta2) * g * g
        z -= lr_t * (g / (np.sqrt(v / (1 - beta2**t)) + eps) + weight_decay * y)
        x[...] = (1 - c) * x + c * z
        p[...] = (1 - beta1) * z + beta1 * x


REFERENCES = {
    "numpy.adabelief": AdaBelief,
    "numpy.yogi": Yogi,
    "numpy.qhadam": QHAdam,
    "numpy.laprop": LaProp,
    "numpy.laprop_amsgrad": lambda: LaProp(amsgrad=True),
    "numpy.adan": Adan,
    "numpy.lion": Lion,
    "numpy.adopt": Adopt,
    "numpy.ademamix": AdEMAMix,
    "numpy.adam_atan2": AdamAtan2,
    "numpy.schedulefree_adamw": ScheduleFreeAdamW,
}


class Lamb(Reference):
    """You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", arXiv:1904.00962,
    Algorithm 2 (LAMB) with bias correction, phi = identity, and timm's trust ratio (1 when either norm is 0):
    r = m_hat / (sqrt(v_hat) + eps) + lambda x; x -= eta |x| / |r| r."""

    name = "lamb"
    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0}
    cautious = False

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * g * g
        r = (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        if self.cautious:
            r = r * cautious_mask(state, r, g)
        r = r + weight_decay * p
        p_norm, r_norm = np.linalg.norm(p), np.linalg.norm(r)
        trust = p_norm / r_norm if p_norm > 0 and r_norm > 0 else 1.0
        p -= lr * trust * r


class StableAdamW(Reference):
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


class Mars(Reference):
    """Yuan et al., "MARS: Unleashing the Power of Variance Reduction for Training Large Models", arXiv:2411.10438,
    Algorithm 2 (MARS-AdamW): c = g + gamma beta1/(1-beta1) (g - g_prev), c /= |c| if |c| > 1, AdamW moments of c,
    x -= eta (m_hat / (sqrt(v_hat) + eps) + lambda x); g_prev starts at 0."""

    name = "mars"
    defaults = dict(lr=3e-3, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0, gamma=0.025)
    state_inits = {"exp_avg": 0.0, "exp_avg_sq": 0.0, "prev_grad": 0.0}

    def update(self, p, g, state, t, lr, beta1, beta2, eps, weight_decay, gamma):
        m, v, prev = state["exp_avg"], state["exp_avg_sq"], state["prev_grad"]
        c = g + gamma * beta1 / (1 - beta1) * (g - prev)
        norm = np.linalg.norm(c)
        if norm > 1:
            c = c / norm
        m[...] = beta1 * m + (1 - beta1) * c
        v[...] = beta2 * v + (1 - beta2) * c * c
        prev[...] = g
        p -= lr * ((m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps) + weight_decay * p)


def cautious_mask(state, update, g):
    """Liang et al., "Cautious Optimizers", arXiv:2411.16085, Algorithm 1 with timm's rescaling: phi = [u g > 0],
    divided by max(mean(phi), 1e-3). Near-zero products are recorded as near ties (the mask may flip in float32)."""
    Reference.note_ties(state, update * g, np.abs(update * g) + 1e-30)
    phi = (update * g > 0).astype(np.float64)
    return phi / max(phi.mean() if phi.size else 0.0, 1e-3)


class CautiousAdamW(Reference):
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


class CautiousLion(Lion):
    """Lion with the cautious mask on sign(c)."""

    name = "clion"
    cautious = True


class CautiousLamb(Lamb):
    name = "clamb"
    cautious = True


REFERENCES.update({
    "numpy.lamb": Lamb,
    "numpy.stableadamw": StableAdamW,
    "numpy.mars": Mars,
    "numpy.cadamw": CautiousAdamW,
    "numpy.clion": CautiousLion,
    "numpy.clamb": CautiousLamb,
})
