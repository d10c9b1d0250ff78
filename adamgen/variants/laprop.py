"""LaProp (Ziyin, Wang & Ueda, 2020, arXiv:2002.04839): momentum over the RMSProp-normalised gradient."""

from sympy import Ne

from adamgen.spec import Piecewise, Spec, grad, param, sqrt

spec = Spec(
    "laprop",
    reference="timm.optim.LaProp (and the official Z-T-WANG/LaProp-Optimizer); Ziyin et al. 2020, arXiv:2002.04839",
    doc="LaProp (Ziyin et al., 2020): the gradient is normalised by sqrt(v_hat) + eps first, then averaged into the "
        "momentum. As timm's LaProp and the official code, the learning rate is folded into the momentum and its "
        "bias correction is the EMA of past learning rates (scalar state exp_avg_lr_1), so a learning-rate schedule "
        "behaves as in the reference; exp_avg_lr_2 is the EMA of ones (1 - beta2^step). Weight decay as timm: "
        "decoupled and scaled by lr, applied after the step (param *= 1 - lr*weight_decay); the official code does "
        "not scale it by lr. With amsgrad, the official code's running maximum of exp_avg_sq.",
)
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=4e-4, beta1=0.9, beta2=0.999, eps=1e-15, weight_decay=0.0)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
exp_avg_lr_1 = spec.scalar_state("exp_avg_lr_1", init=0.0)
exp_avg_lr_2 = spec.scalar_state("exp_avg_lr_2", init=0.0)
lr_1 = spec.update(exp_avg_lr_1, beta1 * exp_avg_lr_1 + (1 - beta1) * lr)
bias_correction2 = spec.update(exp_avg_lr_2, beta2 * exp_avg_lr_2 + (1 - beta2))
# 1 / bias correction of the lr-weighted momentum: lr / EMA(lr), which is 1 / (1 - beta1^step) for a constant lr.
step_size = spec.define("step_size", Piecewise((lr / lr_1, Ne(lr, 0)), (1, True)))
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * grad**2)
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * lr * grad / (sqrt(v / bias_correction2) + eps))
spec.update(param, (param - step_size * m) * (1 - lr * weight_decay))
