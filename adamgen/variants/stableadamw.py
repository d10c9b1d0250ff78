"""StableAdamW (Wortsman et al., 2023, arXiv:2304.13013): AdamW whose learning rate is divided by the gradient's RMS
relative to the second moment when that exceeds 1, as optimi.StableAdamW.

Like optimi, the moments are kept bias-corrected: their EMAs use the debiased betas
beta_hat = beta (1 - beta^(t-1)) / (1 - beta^t), so exp_avg and exp_avg_sq hold m_hat and v_hat."""

from adamgen.spec import Max, Spec, grad, param, sqrt, step

spec = Spec("stableadamw", reference="optimi.StableAdamW",
            doc="StableAdamW (Wortsman et al., 2023): AdamW with update clipping by the per-tensor gradient RMS.")
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=1e-3, beta1=0.9, beta2=0.99, eps=1e-6, weight_decay=1e-2)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
beta1_hat = spec.define("beta1_hat", (beta1**step - beta1) / (beta1**step - 1))
beta2_hat = spec.define("beta2_hat", (beta2**step - beta2) / (beta2**step - 1))
m = spec.update(exp_avg, beta1_hat * exp_avg + (1 - beta1_hat) * grad)
v = spec.update(exp_avg_sq, beta2_hat * exp_avg_sq + (1 - beta2_hat) * grad**2)
mean_square = spec.mean("mean_square", grad**2 / Max(v, eps**2))
lr_t = spec.define("lr_t", lr / Max(1, sqrt(mean_square)))
spec.update(param, param * (1 - lr_t * weight_decay) - lr_t * m / (sqrt(v) + eps))
