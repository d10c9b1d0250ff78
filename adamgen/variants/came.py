"""CAME (Luo et al., 2023, arXiv:2307.02047), as ``came_pytorch.CAME``: Adafactor's factored second moment, momentum on
the RMS-clipped update, and a confidence term: the factored moving average of the squared distance between the
update and its momentum, which scales the step down where the two disagree.

A tensor of one dimension keeps full second moments (column states, one value per element) and steps by the momentum
alone, as the reference. The reference's ``lr`` has no default; 2e-4 is the paper's."""

from adamgen.spec import Max, Piecewise, Spec, grad, ndim, numel, param, sqrt

spec = Spec("came", reference="came_pytorch.CAME",
            doc="CAME (Luo et al., 2023): Adafactor's factored moments with momentum and a confidence-guided step.")
lr, beta1, beta2, beta3, eps1, eps2, clip_threshold, weight_decay = spec.hyperparameters(
    lr=2e-4, beta1=0.9, beta2=0.999, beta3=0.9999, eps1=1e-30, eps2=1e-16, clip_threshold=1.0, weight_decay=0.0)
(exp_avg,) = spec.states("exp_avg")
sq_row, sq_col = spec.row_state("exp_avg_sq_row"), spec.col_state("exp_avg_sq_col")
res_row, res_col = spec.row_state("exp_avg_res_row"), spec.col_state("exp_avg_res_col")

sq_row_new = spec.update(sq_row, beta2 * sq_row + (1 - beta2) * spec.row_mean("sq_row_mean", grad**2 + eps1))
sq_col_new = spec.update(sq_col, beta2 * sq_col + (1 - beta2) * spec.col_mean("sq_col_mean", grad**2 + eps1))
sq_row_mean = spec.rows_mean("sq_row_mean_over_rows", sq_row_new)
scaled = spec.define("scaled", grad / sqrt(sq_row_new / sq_row_mean) / sqrt(sq_col_new))
clip = spec.define("clip", Max(spec.norm("scaled_norm", scaled) / sqrt(numel) / clip_threshold, 1))
update = spec.define("update", scaled / clip)
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * update)
res = spec.define("res", (update - m)**2 + eps2)
res_row_new = spec.update(res_row, beta3 * res_row + (1 - beta3) * spec.row_mean("res_row_mean", res))
res_col_new = spec.update(res_col, beta3 * res_col + (1 - beta3) * spec.col_mean("res_col_mean", res))
res_row_mean = spec.rows_mean("res_row_mean_over_rows", res_row_new)
step_direction = spec.define("step_direction", Piecewise(
    (m, ndim < 2), (m / sqrt(res_row_new / res_row_mean) / sqrt(res_col_new), True)))
spec.update(param, param - lr * weight_decay * param - lr * step_direction)
