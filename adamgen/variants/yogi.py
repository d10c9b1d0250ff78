"""Yogi (Zaheer et al., NeurIPS 2018, "Adaptive Methods for Nonconvex Optimization"): additive second-moment update."""

from adamgen.spec import Spec, grad, param, sign, sqrt, step

spec = Spec(
    "yogi",
    reference="Zaheer et al., NeurIPS 2018, Algorithm 2 (with Adam's bias correction, as torch-optimizer's Yogi)",
    doc="Yogi (Zaheer et al., NeurIPS 2018): exp_avg_sq moves by (1-beta2)*grad^2 towards grad^2 "
        "(v -= (1-beta2)*sign(v - grad^2)*grad^2) instead of Adam's multiplicative decay; exp_avg_sq starts at 1e-6 "
        "(the authors' initial_accumulator_value). The paper's Algorithm 2 has no bias correction; like the common "
        "implementations (torch-optimizer, optax) this one divides by 1 - beta^step, and it uses coupled L2 weight "
        "decay as torch-optimizer does.",
)
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-3, weight_decay=0.0)
exp_avg = spec.state("exp_avg")
exp_avg_sq = spec.state("exp_avg_sq", init=1e-6)
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
g = grad + weight_decay * param
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * g)
v = spec.update(exp_avg_sq, exp_avg_sq - (1 - beta2) * sign(exp_avg_sq - g**2) * g**2)
spec.update(param, param - lr / bias_correction1 * m / (sqrt(v / bias_correction2) + eps))
