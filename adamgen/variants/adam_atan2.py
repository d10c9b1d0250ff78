"""Adam-atan2 (Everett et al., 2024, arXiv:2407.05872): Adam without eps, the quotient replaced by atan2."""

from adamgen.spec import Spec, atan2, grad, param, sqrt, step

spec = Spec(
    "adam_atan2",
    reference="Everett et al. 2024, arXiv:2407.05872 (section on Adam-atan2); lucidrains adam-atan2-pytorch",
    doc="Adam-atan2 (Everett et al., 2024): param -= lr * a * atan2(m_hat, b * sqrt(v_hat)), which is bounded by "
        "lr*a*pi/2, scale invariant, and needs no eps. Decoupled weight decay param *= 1 - lr*weight_decay before "
        "the step, as AdamW and adam-atan2-pytorch.",
)
lr, beta1, beta2, weight_decay, a, b = spec.hyperparameters(
    lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, a=1.27, b=1.0)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * grad)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * grad**2)
spec.update(param, param * (1 - lr * weight_decay) - lr * a * atan2(m / bias_correction1, b * sqrt(v / bias_correction2)))
