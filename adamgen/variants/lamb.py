"""LAMB (You et al., 2019, arXiv:1904.00962): Adam's direction plus decoupled decay, scaled per tensor by a trust ratio.

As timm's Lamb with its defaults (bias correction, gradient averaging, no trust clipping, ``always_adapt=False``: no
trust ratio for a tensor without weight decay, as apex's FusedLAMB without ``use_nvlamb``), without timm's global
gradient-norm clipping (the ``clip_grad_norm`` option adds it)."""

from sympy import Ne

from adamgen.spec import Piecewise, Spec, grad, param, sqrt, step

spec = Spec("lamb", reference="timm.optim.Lamb",
            doc="LAMB (You et al., 2019): Adam's direction scaled per tensor by the trust ratio |param| / |update|.")
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01)
always_adapt = spec.hyperparameter("always_adapt", False)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * grad)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * grad**2)
direction = spec.define("direction", (m / bias_correction1) / (sqrt(v / bias_correction2) + eps))
update = spec.define("update", direction + weight_decay * param)
param_norm = spec.norm("param_norm", param)
update_norm = spec.norm("update_norm", update)
adapt = spec.define("adapt", always_adapt | Ne(weight_decay, 0))
trust_ratio = spec.define("trust_ratio", Piecewise(
    (param_norm / update_norm, adapt & (param_norm > 0) & (update_norm > 0)), (1, True)))
spec.update(param, param - lr * trust_ratio * update)
