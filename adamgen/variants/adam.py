"""Adam (Kingma & Ba, 2014, arXiv:1412.6980) with torch.optim.Adam's coupled L2 weight decay."""

from adamgen.spec import Spec, grad, param, sqrt, step

spec = Spec("adam", reference="torch.optim.Adam", doc="Adam (Kingma & Ba, 2014) with coupled L2 weight decay.")
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
step_size = spec.define("step_size", lr / bias_correction1)
g = grad + weight_decay * param
m = spec.update(exp_avg, exp_avg + (1 - beta1) * (g - exp_avg))  # torch.lerp(exp_avg, g, 1 - beta1)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * g**2)
spec.update(param, param - step_size * m / (sqrt(v / bias_correction2) + eps))
