"""Variants for the CUDA tests beyond the shipped built-ins: a spec with two reduce passes, the second reading the
first's result (a mean, then a variance around it), and the built-ins under the on-demand option sets their files in
``tests/variants/`` name (options that no built-in ships, generated on demand).
"""

from __future__ import annotations

import variants
from adamgen.spec import Spec, grad, param, sqrt, validate
from adamgen.variants import builtin, with_options


def two_pass_spec() -> Spec:
    spec = Spec("centred_norm_sgd", doc="Momentum SGD scaled by the gradient's spread around its mean (a test spec).")
    lr, beta1, weight_decay = spec.hyperparameters(lr=1e-2, beta1=0.9, weight_decay=0.0)
    (exp_avg,) = spec.states("exp_avg")
    g = grad + weight_decay * param
    m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * g)
    mean = spec.mean("grad_mean", g)
    variance = spec.mean("grad_variance", (g - mean) ** 2)
    param_norm = spec.norm("param_norm", param)
    spec.update(param, param - lr * sqrt(variance) / (1 + param_norm) * m)
    return spec


def extra_variants() -> list:
    """Checked variants that are not shipped built-ins (built-ins are covered with the others): the two-pass spec,
    then each built-in under each of its files' on-demand option sets (lion with both on-demand decay options: a
    per-element choice on signs and a hyperparameter the option adds; lamb with global gradient-norm clipping: a
    reduction over every tensor of a step_many call; adamw with Kahan-compensated updates: a store rounded and read
    back; adamw with stochastic rounding: random bits from the step, the tensor's and the element's index)."""
    return [validate(two_pass_spec())] + [with_options(builtin(name), **options)
                                          for name, tests in variants.FILES.items() for options in tests.on_demand]
