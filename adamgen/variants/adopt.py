"""ADOPT (Taniguchi et al., NeurIPS 2024, arXiv:2411.02853): normalise by the previous second moment, then average."""

from adamgen.spec import Max, Min, Piecewise, Spec, grad, param, sqrt, step

spec = Spec(
    "adopt",
    reference="official iShohei220/adopt ADOPT(decouple=True), timm.optim.Adopt(decoupled=True, clip_exp=0.25); "
              "Taniguchi et al. 2024, arXiv:2411.02853",
    doc="ADOPT (Taniguchi et al., 2024): step 1 only sets exp_avg_sq = grad^2; afterwards the gradient is divided by "
        "max(sqrt(exp_avg_sq), eps) using the second moment from before this step, clipped to +-(step-1)^clip_exp "
        "(the official clip_lambda step**0.25 with a 0-based step; timm's clip_exp defaults to 0.333), averaged into "
        "exp_avg, and only then is exp_avg_sq updated. Weight decay is decoupled (param *= 1 - lr*weight_decay from "
        "step 2 on), the reference's decouple=True; the reference's default is coupled L2.",
)
lr, beta1, beta2, eps, weight_decay, clip_exp = spec.hyperparameters(
    lr=1e-3, beta1=0.9, beta2=0.9999, eps=1e-6, weight_decay=0.0, clip_exp=0.25)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
first_step = spec.define("first_step", step <= 1)
clip = spec.define("clip", (step - 1)**clip_exp)
normed_grad = grad / Max(sqrt(exp_avg_sq), eps)
clipped = Min(Max(normed_grad, -clip), clip)
m = spec.update(exp_avg, Piecewise((exp_avg, first_step), (beta1 * exp_avg + (1 - beta1) * clipped, True)))
spec.update(exp_avg_sq, Piecewise((grad**2, first_step), (beta2 * exp_avg_sq + (1 - beta2) * grad**2, True)))
spec.update(param, Piecewise((param, first_step), (param * (1 - lr * weight_decay) - lr * m, True)))
