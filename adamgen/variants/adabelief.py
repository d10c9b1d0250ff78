"""AdaBelief (Zhuang et al., 2020, arXiv:2010.07468): Adam whose second moment tracks the "belief" (g - m)^2."""

from adamgen.spec import Spec, grad, param, sqrt, step

spec = Spec(
    "adabelief",
    reference="adabelief_pytorch.AdaBelief(rectify=False) (official adabelief-pytorch 0.2)",
    doc="AdaBelief (Zhuang et al., 2020, arXiv:2010.07468): Adam with the second moment replaced by an EMA of "
        "(grad - exp_avg)^2 + eps. As adabelief-pytorch 0.2 with rectify=False (the paper's Algorithm 2; the package "
        "defaults to the RAdam-style rectified form) and its default weight_decouple=True, fixed_decay=False: "
        "decoupled decay param *= 1 - lr*weight_decay. eps is added both inside the state (as the reference does "
        "in place) and to the denominator. State exp_avg_var keeps the reference's name.",
)
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-16, weight_decay=0.0)
exp_avg, exp_avg_var = spec.states("exp_avg", "exp_avg_var")
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * grad)
s = spec.update(exp_avg_var, beta2 * exp_avg_var + (1 - beta2) * (grad - m)**2 + eps)
spec.update(param, param * (1 - lr * weight_decay) - lr / bias_correction1 * m / (sqrt(s / bias_correction2) + eps))
