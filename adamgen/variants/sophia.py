"""SophiaG (Liu et al., 2023, arXiv:2305.14342): sign momentum clipped by a diagonal Hessian estimate, as the authors'
SophiaG (``sophia-opt``).

Two kinds of call share the state. A step (``hessian_step`` false): decoupled decay, ``exp_avg`` moves toward the
gradient, and the parameter by ``lr * sign(m) * min(|m| / (rho * bs * hessian + 1e-15), 1)``; ``hessian`` is read,
not written. A Hessian step (``hessian_step`` true; ``SophiaG.update_hessian()`` in adamgen.torch), every k steps
with the gradient of the loss on labels sampled from the model's own outputs (the Gauss-Newton-Bartlett estimator):
``hessian`` moves toward its square, nothing else changes. No bias correction; ``bs`` is the number of tokens per
step (the reference's ``step(bs=...)`` argument)."""

from adamgen.spec import Abs, Min, Piecewise, Spec, grad, param, sign

spec = Spec("sophia", reference="sophia_opt.SophiaG (Liuhong99/Sophia)",
            doc="SophiaG (Liu et al., 2023): sign momentum clipped by a diagonal Hessian estimate; hessian_step=True "
                "renews the estimate from the gradient given (update_hessian in the reference).")
lr, beta1, beta2, rho, weight_decay, bs = spec.hyperparameters(
    lr=1e-4, beta1=0.965, beta2=0.99, rho=0.04, weight_decay=0.1, bs=5120.0)
hessian_step = spec.hyperparameter("hessian_step", False)
exp_avg, hessian = spec.states("exp_avg", "hessian")

spec.update(hessian, Piecewise((beta2 * hessian + (1 - beta2) * grad**2, hessian_step), (hessian, True)))
m = spec.define("m", beta1 * exp_avg + (1 - beta1) * grad)
spec.update(exp_avg, Piecewise((exp_avg, hessian_step), (m, True)))
ratio = Min(Abs(m) / (rho * bs * hessian + 1e-15), 1)
spec.update(param, Piecewise((param, hessian_step), (param * (1 - lr * weight_decay) - lr * sign(m) * ratio, True)))
