"""Adafactor (Shazeer & Stern, 2018, arXiv:1804.04235) as ``torch.optim.Adafactor``: the second moment of a matrix kept
factored, as a row vector and a column vector over the last two dimensions, and an update clipped by its RMS.

``one_minus_beta2_t = step**beta2_decay`` moves the factors toward the row and column means of ``grad**2``; the
estimate is their outer product divided by the mean of the row factor (per slice, at least ``eps1``). A tensor of one
dimension keeps a full second moment (its column state, one value per element), as the reference's ``variance``. The
step is relative: ``max(eps2, rms(param)) * min(lr, 1/sqrt(step))``, with the parameter's RMS taken before the
decoupled weight decay, and divided by ``max(1, rms(update) / d)``.

The reference's ``eps1=None`` is the machine epsilon of the parameter's dtype; the default here is float32's: give
``eps1`` for another dtype (``adamgen.torch.Adafactor`` does)."""

import numpy as np

from adamgen.spec import Max, Min, Piecewise, Spec, grad, ndim, numel, param, sqrt, step

spec = Spec("adafactor", reference="torch.optim.Adafactor",
            doc="Adafactor (Shazeer & Stern, 2018): a factored second moment (row and column states) and a relative, "
                "RMS-clipped step.")
lr, beta2_decay, eps1, eps2, d, weight_decay = spec.hyperparameters(
    lr=1e-2, beta2_decay=-0.8, eps1=float(np.finfo(np.float32).eps), eps2=1e-3, d=1.0, weight_decay=0.0)
row_var, col_var = spec.row_state("row_var"), spec.col_state("col_var")
one_minus_beta2_t = spec.define("one_minus_beta2_t", step**beta2_decay)
rho_t = spec.define("rho_t", Min(lr, 1 / sqrt(step)))
alpha = spec.define("alpha", Max(eps2, spec.norm("param_norm", param) / sqrt(numel)) * rho_t)
row_new = spec.update(row_var, row_var + one_minus_beta2_t * (spec.row_mean("row_mean", grad**2) - row_var))
col_new = spec.update(col_var, col_var + one_minus_beta2_t * (spec.col_mean("col_mean", grad**2) - col_var))
row_var_mean = spec.rows_mean("row_var_mean", row_new)
var_estimate = spec.define("var_estimate", Piecewise(
    (col_new, ndim < 2), (row_new * col_new / Max(row_var_mean, eps1), True)))
update = spec.define("update", grad / sqrt(Max(var_estimate, eps1**2)))
denom = spec.define("denom", Max(1, spec.norm("update_norm", update) / (sqrt(numel) * d)))
spec.update(param, param * (1 - lr * weight_decay) - alpha / denom * update)
