"""MARS (Yuan et al., 2024, arXiv:2411.10438), the AdamW form: variance-reduced gradient c = grad + gamma beta1/(1-beta1)
(grad - prev_grad), scaled to norm 1 when its norm exceeds 1, then an AdamW step on c.

Follows the paper's MARS-AdamW with the decay added to the update (p -= lr (m_hat/(sqrt(v_hat)+eps) + wd p)), as timm's
Mars does; prev_grad starts at 0, as in timm. Unlike timm, 1-D tensors get the same MARS step (timm's optimize_1d=False
sends them to plain AdamW: pick the variant per tensor with parameter groups)."""

from adamgen.spec import Piecewise, Spec, grad, param, sqrt, step

spec = Spec("mars", reference="timm.optim.Mars",
            doc="MARS (Yuan et al., 2024): AdamW on a variance-reduced, norm-clipped gradient.")
lr, beta1, beta2, eps, weight_decay, gamma = spec.hyperparameters(
    lr=3e-3, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0, gamma=0.025)
exp_avg, exp_avg_sq, prev_grad = spec.states("exp_avg", "exp_avg_sq", "prev_grad")
spec.update(prev_grad, grad)
correction = grad + gamma * beta1 / (1 - beta1) * (grad - prev_grad)
correction_norm = spec.norm("correction_norm", correction)
scale = spec.define("scale", Piecewise((1 / correction_norm, correction_norm > 1), (1, True)))
c = scale * correction
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * c)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * c**2)
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
spec.update(param, param - lr * ((m / bias_correction1) / (sqrt(v / bias_correction2) + eps) + weight_decay * param))
