"""D-Adaptation Adam (Defazio & Mishchenko, 2023, arXiv:2301.07733): Adam whose step size ``d`` is estimated from the
run, as dadaptation's DAdaptAdam.

One step of a param group, two passes over its tensors. The reduce pass sums over every tensor of the group (a
``GroupSum``): ``layer_scale dlr <g, s / (sqrt(v) + eps)>`` with the old ``s`` and ``v``, and
``layer_scale ||s_new||_1``. The host then updates the group's estimate (``numerator_weighted`` and ``d``: scalar
states, equal in every tensor of a group that steps together); the update pass moves the parameter by
``exp_avg / (sqrt(exp_avg_sq) + eps)``, where ``exp_avg`` already carries ``dlr = d lr bias_correction`` (the old
``d``). Where ``||s_new||_1`` is 0 (every gradient so far zero) the moments move and nothing else, as the reference
returns early.

``d`` starts at 0, read as ``d0``; ``growth_rate``'s default is the largest float64 (the reference's ``inf``: no
limit). The reference keeps one ``d`` for all param groups (and steps with the largest lr); here each param group
(each ``step_many`` call) has its own."""

import sys

from sympy import Not

from adamgen.spec import Abs, Max, Min, Piecewise, Spec, grad, param, sqrt, step

spec = Spec("dadapt_adam", reference="dadaptation.DAdaptAdam",
            doc="D-Adaptation Adam (Defazio & Mishchenko, 2023): Adam with the step size d estimated over each param "
                "group.")
lr, beta1, beta2, eps, weight_decay, d0, growth_rate, layer_scale = spec.hyperparameters(
    lr=1.0, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, d0=1e-6, growth_rate=sys.float_info.max,
    layer_scale=1.0)
decouple, use_bias_correction = (spec.hyperparameter(name, False) for name in ("decouple", "use_bias_correction"))
exp_avg, exp_avg_sq, s = spec.states("exp_avg", "exp_avg_sq", "s")
d, numerator_weighted = (spec.scalar_state(name, 0.0) for name in ("d", "numerator_weighted"))

d_old = spec.define("d_old", Piecewise((d0, d <= 0), (d, True)))
sqrt_beta2 = spec.define("sqrt_beta2", sqrt(beta2))
bias_correction = spec.define("bias_correction", Piecewise(
    (sqrt(1 - beta2**step) / (1 - beta1**step), use_bias_correction), (1, True)))
dlr = spec.define("dlr", d_old * lr * bias_correction)
g = Piecewise((grad + weight_decay * param, Not(decouple)), (grad, True))  # coupled decay: in the gradient
numerator_acum = spec.group_sum("numerator_acum", layer_scale * dlr * g * s / (sqrt(exp_avg_sq) + eps))
m = spec.update(exp_avg, beta1 * exp_avg + layer_scale * dlr * (1 - beta1) * g)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * g**2)
s_new = spec.update(s, sqrt_beta2 * s + dlr * (1 - sqrt_beta2) * g)
sk_l1 = spec.group_sum("sk_l1", layer_scale * Abs(s_new))

moving = spec.define("moving", sk_l1 > 0)  # the reference returns before this when sk_l1 is 0
weighted = spec.define("weighted", sqrt_beta2 * numerator_weighted + (1 - sqrt_beta2) * numerator_acum)
d_hat = spec.define("d_hat", Piecewise((weighted / ((1 - sqrt_beta2) * sk_l1), moving), (d_old, True)))
spec.update(numerator_weighted, Piecewise((weighted, moving), (numerator_weighted, True)))
spec.update(d, Piecewise((Max(d_old, Min(d_hat, d_old * growth_rate)), moving), (d_old, True)))
decay = Piecewise((weight_decay * dlr, decouple), (0, True))
spec.update(param, Piecewise((param - decay * param - m / (sqrt(v) + eps), moving), (param, True)))
