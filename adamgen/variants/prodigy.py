"""Prodigy (Mishchenko & Defazio, 2023, arXiv:2306.06101): Adam whose step size ``d`` is estimated from the run, as
prodigyopt's Prodigy.

One step of a param group, two passes over its tensors. The reduce pass sums over every tensor of the group (a
``GroupSum``): the numerator's increment ``(d/d0) dlr <g, p0 - p>`` and ``||s_new||_1``. The host then updates the
group's estimate (``d_numerator``, ``d``, ``d_max``: scalar states, equal in every tensor of a group that steps
together); the update pass applies Adam's step with the old ``dlr = d lr bias_correction`` and the new ``d`` in the
denominator's ``d eps``. Where ``||s_new||_1`` is 0 (every gradient so far zero) the moments move and nothing else, as
the reference returns early.

``p0`` (the parameter when its state was made) is a state made as a copy of the parameter, which the rule only reads:
no pass writes it. ``d`` and ``d_max`` start at 0, read as ``d0``. ``beta3``'s default is
``sqrt(0.999)``, the reference's ``None`` (``sqrt(beta2)``) with its default ``beta2``: give ``beta3`` with another
``beta2``. ``growth_rate``'s default is the largest float64 (the reference's ``inf``: no limit). The reference keeps one ``d`` for all param groups (and steps with the largest lr); here each param
group (each ``step_many`` call) has its own."""

import math
import sys

from sympy import Eq, Not

from adamgen.spec import Abs, Max, Min, Piecewise, Spec, grad, param, sqrt, step

spec = Spec("prodigy", reference="prodigyopt.Prodigy",
            doc="Prodigy (Mishchenko & Defazio, 2023): Adam with the step size d estimated over each param group.")
lr, beta1, beta2, beta3, eps, weight_decay, d0, d_coef, growth_rate = spec.hyperparameters(
    lr=1.0, beta1=0.9, beta2=0.999, beta3=math.sqrt(0.999), eps=1e-8, weight_decay=0.0, d0=1e-6, d_coef=1.0,
    growth_rate=sys.float_info.max)
decouple, use_bias_correction, safeguard_warmup = (
    spec.hyperparameter(name, default) for name, default in
    (("decouple", True), ("use_bias_correction", False), ("safeguard_warmup", False)))
exp_avg, exp_avg_sq, s = spec.states("exp_avg", "exp_avg_sq", "s")
p0 = spec.state("p0", init=param)
d, d_max, d_numerator = (spec.scalar_state(name, 0.0) for name in ("d", "d_max", "d_numerator"))

d_old = spec.define("d_old", Piecewise((d0, d <= 0), (d, True)))
d_max_old = spec.define("d_max_old", Piecewise((d0, d_max <= 0), (d_max, True)))
bias_correction = spec.define("bias_correction", Piecewise(
    (sqrt(1 - beta2**step) / (1 - beta1**step), use_bias_correction), (1, True)))
dlr = spec.define("dlr", d_old * lr * bias_correction)
g = Piecewise((grad + weight_decay * param, Not(decouple)), (grad, True))  # coupled decay: in the gradient
delta_numerator = spec.group_sum("delta_numerator", d_old / d0 * dlr * g * (p0 - param))
m = spec.update(exp_avg, beta1 * exp_avg + d_old * (1 - beta1) * g)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + d_old**2 * (1 - beta2) * g**2)
s_new = spec.update(s, beta3 * s + Piecewise((d_old / d0 * d_old, safeguard_warmup), (d_old / d0 * dlr, True)) * g)
spec.update(p0, p0)
d_denom = spec.group_sum("d_denom", Abs(s_new))

moving = spec.define("moving", d_denom > 0)  # the reference returns before this when d_denom is 0
numerator = spec.define("numerator", beta3 * d_numerator + delta_numerator)
d_hat = spec.define("d_hat", Piecewise((d_coef * numerator / d_denom, moving), (d_old, True)))
d_max_next = spec.define("d_max_next", Max(d_max_old, d_hat))
d_next = spec.define("d_next", Min(d_max_next, Piecewise((Max(d_old, d_hat), Eq(d_old, d0)), (d_old, True)) * growth_rate))
spec.update(d_numerator, Piecewise((numerator, moving), (d_numerator, True)))
spec.update(d, Piecewise((d_next, moving), (d_old, True)))
spec.update(d_max, Piecewise((d_max_next, moving), (d_max_old, True)))
decay = Piecewise((weight_decay * dlr, decouple), (0, True))
spec.update(param, Piecewise((param - decay * param - dlr * m / (sqrt(v) + d_next * eps), moving), (param, True)))
