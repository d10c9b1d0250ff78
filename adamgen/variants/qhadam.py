"""QHAdam (Ma & Yarats, 2018, arXiv:1810.06801): quasi-hyperbolic Adam."""

from adamgen.spec import Spec, grad, param, sqrt, step

spec = Spec(
    "qhadam",
    reference="qhoptim.pyt.QHAdam (facebookresearch/qhoptim); Ma & Yarats 2018, arXiv:1810.06801",
    doc="QHAdam (Ma & Yarats, 2018): the step mixes the current gradient with the bias-corrected moments, "
        "((1-nu1)*g + nu1*m_hat) / (sqrt((1-nu2)*g^2 + nu2*v_hat) + eps). Defaults are the paper's recommended "
        "nu=(0.7, 1.0), betas=(0.995, 0.999). Coupled L2 weight decay, qhoptim's default "
        "(decouple_weight_decay=False). qhoptim stores the bias-corrected moments; the states here are torch's "
        "uncorrected exp_avg / exp_avg_sq (equal after dividing by 1 - beta^step).",
)
lr, beta1, beta2, nu1, nu2, eps, weight_decay = spec.hyperparameters(
    lr=1e-3, beta1=0.995, beta2=0.999, nu1=0.7, nu2=1.0, eps=1e-8, weight_decay=0.0)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
g = grad + weight_decay * param
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * g)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * g**2)
numerator = (1 - nu1) * g + nu1 * m / bias_correction1
denominator = sqrt((1 - nu2) * g**2 + nu2 * v / bias_correction2) + eps
spec.update(param, param - lr * numerator / denominator)
