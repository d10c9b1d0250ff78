"""NAdam (Dozat, 2016) with torch.optim.NAdam's momentum-decay schedule and coupled L2 weight decay."""

from adamgen.spec import Spec, grad, param, sqrt, step

spec = Spec("nadam", reference="torch.optim.NAdam", doc="NAdam (Dozat, 2016): Adam with Nesterov momentum.")
lr, beta1, beta2, eps, weight_decay, momentum_decay = spec.hyperparameters(
    lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, momentum_decay=4e-3)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
mu_product = spec.scalar_state("mu_product", init=1.0)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
mu = spec.define("mu", beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay)))
mu_next = spec.define("mu_next", beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay)))
mu_product_new = spec.update(mu_product, mu_product * mu)
mu_product_next = spec.define("mu_product_next", mu_product_new * mu_next)
g = grad + weight_decay * param
m = spec.update(exp_avg, exp_avg + (1 - beta1) * (g - exp_avg))  # torch.lerp(exp_avg, g, 1 - beta1)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * g**2)
denom = sqrt(v / bias_correction2) + eps
spec.update(param, param - lr * (1 - mu) / (1 - mu_product_new) * g / denom
            - lr * mu_next / (1 - mu_product_next) * m / denom)
