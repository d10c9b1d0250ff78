"""Adan (Xie et al., 2022, arXiv:2208.06677): adaptive Nesterov momentum."""

from adamgen.spec import Piecewise, Spec, grad, param, sqrt, step

spec = Spec(
    "adan",
    reference="official sail-sg/Adan and timm.optim.Adan (no_prox=False); optimi.Adan; Xie et al. 2022, arXiv:2208.06677",
    doc="Adan (Xie et al., 2022): moments of the gradient (exp_avg), of the gradient difference (exp_avg_diff) and "
        "of the squared Nesterov-corrected gradient grad + beta2*diff (exp_avg_sq); prev_grad keeps the last "
        "gradient and the difference is 0 on the first step, as in the reference. Betas use torch's convention "
        "(beta = 1 - the paper's beta). Adan's own proximal weight decay: param = (param - lr*update) / "
        "(1 + lr*weight_decay), after the step (optimi's default, the reference's no_prox=False). Default "
        "weight_decay 0.02 and eps 1e-8 (the reference's eps; optimi defaults to 1e-6).",
)
lr, beta1, beta2, beta3, eps, weight_decay = spec.hyperparameters(
    lr=1e-3, beta1=0.98, beta2=0.92, beta3=0.99, eps=1e-8, weight_decay=0.02)
exp_avg, exp_avg_diff, exp_avg_sq, prev_grad = spec.states("exp_avg", "exp_avg_diff", "exp_avg_sq", "prev_grad")
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
bias_correction3 = spec.define("bias_correction3", 1 - beta3**step)
diff = Piecewise((grad - prev_grad, step > 1), (0, True))
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * grad)
d = spec.update(exp_avg_diff, beta2 * exp_avg_diff + (1 - beta2) * diff)
n = spec.update(exp_avg_sq, beta3 * exp_avg_sq + (1 - beta3) * (grad + beta2 * diff)**2)
spec.update(prev_grad, grad)
update = (m / bias_correction1 + beta2 * d / bias_correction2) / (sqrt(n / bias_correction3) + eps)
spec.update(param, (param - lr * update) / (1 + lr * weight_decay))
