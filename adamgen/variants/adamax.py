"""Adamax (Kingma & Ba, 2014, section 7): Adam with the infinity norm, as torch.optim.Adamax."""

from adamgen.spec import Abs, Max, Spec, grad, param, step

spec = Spec("adamax", reference="torch.optim.Adamax", doc="Adamax (Kingma & Ba, 2014): Adam with the infinity norm.")
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
exp_avg, exp_inf = spec.states("exp_avg", "exp_inf")
step_size = spec.define("step_size", lr / (1 - beta1**step))
g = grad + weight_decay * param
m = spec.update(exp_avg, exp_avg + (1 - beta1) * (g - exp_avg))  # torch.lerp(exp_avg, g, 1 - beta1)
u = spec.update(exp_inf, Max(beta2 * exp_inf, Abs(g) + eps))
spec.update(param, param - step_size * m / u)
