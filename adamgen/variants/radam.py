"""RAdam (Liu et al., 2019, arXiv:1908.03265): Adam with the variance rectification term, as torch.optim.RAdam."""

from adamgen.spec import Piecewise, Spec, grad, param, sqrt, step

spec = Spec("radam", reference="torch.optim.RAdam", doc="RAdam (Liu et al., 2019): rectified Adam.")
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
rho_inf = spec.define("rho_inf", 2 / (1 - beta2) - 1)
rho_t = spec.define("rho_t", rho_inf - 2 * step * beta2**step / bias_correction2)
rectified = spec.define("rectified", rho_t > 5)
# The rectification term is real only once rho_t > 4; it is read only where rho_t > 5.
rect = spec.define("rect", Piecewise(
    (sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)), rectified), (0, True)))
g = grad + weight_decay * param
m = spec.update(exp_avg, exp_avg + (1 - beta1) * (g - exp_avg))  # torch.lerp(exp_avg, g, 1 - beta1)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * g**2)
m_hat = m / bias_correction1
spec.update(param, Piecewise(
    (param - lr * rect * m_hat * sqrt(bias_correction2) / (sqrt(v) + eps), rectified),
    (param - lr * m_hat, True)))
