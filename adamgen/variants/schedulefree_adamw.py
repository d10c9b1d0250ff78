"""Schedule-free AdamW (Defazio et al., 2024, arXiv:2405.15682): no learning-rate schedule; the parameter is the
interpolation y = (1-beta1) z + beta1 x of the base iterate z and its weighted average x, as schedulefree's
AdamWScheduleFree in training mode.

The parameter holds y (where gradients are taken) and the state z; evaluate the model at the average
x = param + (1 - 1/beta1) (z - param), which schedulefree's ``optimizer.eval()`` swaps in. z starts as the parameter:
on step 1 the rule reads the parameter in place of the (zero-filled) state. Averaging weights are
step^r * lr_max^weight_lr_power, with lr_max the largest learning rate so far (host scalar states lr_max and weight_sum).
"""

from adamgen.spec import Max, Min, Piecewise, Spec, grad, param, sqrt, step

spec = Spec(
    "schedulefree_adamw",
    reference="schedulefree.AdamWScheduleFree (facebookresearch/schedule_free); Defazio et al. 2024, arXiv:2405.15682",
    doc="Schedule-free AdamW (Defazio et al., 2024): param is y = (1-beta1) z + beta1 x, the point where gradients are "
        "taken; evaluate at x = param + (1 - 1/beta1) (z - param). Linear warm-up over warmup_steps (0: none); "
        "averaging weights step^r * lr_max^weight_lr_power.",
)
lr, beta1, beta2, eps, weight_decay, warmup_steps, r, weight_lr_power = spec.hyperparameters(
    lr=2.5e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, warmup_steps=0.0, r=0.0, weight_lr_power=2.0)
z, exp_avg_sq = spec.states("z", "exp_avg_sq")
lr_max, weight_sum = spec.scalar_state("lr_max", init=-1.0), spec.scalar_state("weight_sum", init=0.0)

scheduled_lr = spec.define("scheduled_lr", lr * Min(1, step / Max(warmup_steps, 1)))
lr_max_new = spec.update(lr_max, Max(lr_max, scheduled_lr))
weight = spec.define("weight", step**r * lr_max_new**weight_lr_power)
weight_sum_new = spec.update(weight_sum, weight_sum + weight)
ckp1 = spec.define("ckp1", Piecewise((weight / weight_sum_new, weight_sum_new > 0), (0, True)))
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)

z_old = Piecewise((param, step <= 1), (z, True))  # z starts as a copy of the parameter
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * grad**2)
direction = spec.define("direction", grad / (sqrt(v / bias_correction2) + eps) + weight_decay * param)
spec.update(z, z_old - scheduled_lr * direction)
spec.update(param, param + ckp1 * (z_old - param) + scheduled_lr * (beta1 * (1 - ckp1) - 1) * direction)
