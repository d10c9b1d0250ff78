"""AdEMAMix (Pagliardini, Ablin & Grangier, 2024, arXiv:2409.03137): Adam plus a slow, uncorrected EMA."""

from adamgen.spec import Max, Piecewise, Spec, grad, log, param, sqrt, step

spec = Spec(
    "ademamix",
    reference="official apple/ml-ademamix AdEMAMix (PyTorch); Pagliardini et al. 2024, arXiv:2409.03137",
    doc="AdEMAMix (Pagliardini et al., 2024): (m_hat + alpha*exp_avg_slow) / (sqrt(v_hat) + eps), where "
        "exp_avg_slow is an EMA with beta3 and no bias correction. alpha ramps up linearly over alpha_warmup steps "
        "and beta3 over beta3_warmup steps along the half-life schedule of the official code (starting from beta1); "
        "a warm-up of 0 (the default) means none, the official None. Weight decay as the paper's Algorithm 1 and "
        "the official code: param -= lr*weight_decay*param alongside the step. Default alpha 5 (the paper's "
        "experiments; the official code defaults to 2).",
)
lr, beta1, beta2, beta3, alpha, alpha_warmup, beta3_warmup, eps, weight_decay = spec.hyperparameters(
    lr=1e-3, beta1=0.9, beta2=0.999, beta3=0.9999, alpha=5.0, alpha_warmup=0.0, beta3_warmup=0.0, eps=1e-8,
    weight_decay=0.0)
exp_avg, exp_avg_slow, exp_avg_sq = spec.states("exp_avg", "exp_avg_slow", "exp_avg_sq")
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)


def half_life(beta):
    """Steps until an EMA with coefficient beta halves, minus one (the official schedule's f)."""
    return log(0.5) / log(beta + 1e-8) - 1


# Fractions of the warm-ups done; a warm-up length below 1 means none. (Max(..., 1) keeps the division defined
# where the warm-up branch is not taken.)
alpha_progress = spec.define("alpha_progress", step / Max(alpha_warmup, 1))
beta3_progress = spec.define("beta3_progress", step / Max(beta3_warmup, 1))
alpha_t = spec.define("alpha_t", Piecewise((alpha_progress * alpha, step < alpha_warmup), (alpha, True)))
beta3_t = spec.define("beta3_t", Piecewise(
    (0.5**(1 / ((1 - beta3_progress) * half_life(beta1) + beta3_progress * half_life(beta3) + 1)),
     step < beta3_warmup),
    (beta3, True)))
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * grad)
m_slow = spec.update(exp_avg_slow, beta3_t * exp_avg_slow + (1 - beta3_t) * grad)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * grad**2)
update = (m / bias_correction1 + alpha_t * m_slow) / (sqrt(v / bias_correction2) + eps)
spec.update(param, param - lr * (update + weight_decay * param))
