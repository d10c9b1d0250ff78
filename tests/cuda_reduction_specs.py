"""Variants for the CUDA tests beyond the shipped built-ins: variants with per-tensor reductions, whether or not any
built-in has one yet, and a built-in under the options that no built-in ships (generated on demand).

LAMB (two norms in one reduce pass) and StableAdamW (a mean) come from their spec files when those exist; the spec below
needs two reduce passes, the second reading the first's result (a mean, then a variance around it).
"""

from __future__ import annotations

import importlib

from adamgen.spec import Spec, grad, param, sqrt, validate
from adamgen.variants import BUILTINS, builtin, with_options


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
    """Checked variants that are not shipped built-ins (built-ins are covered with the others): reductions, lion with
    both on-demand decay options (a per-element choice on signs and a hyperparameter the option adds), and lamb with
    global gradient-norm clipping (a reduction over every tensor of a step_many call), and adamw with Kahan-compensated
    updates (a store rounded and read back)."""
    variants = [validate(two_pass_spec()),
                with_options(builtin("lion"), corrected_weight_decay=True, cautious_weight_decay=True),
                with_options(builtin("lamb"), clip_grad_norm=True),
                with_options(builtin("adamw"), kahan=True)]
    for name in ("lamb", "stableadamw"):
        if name in BUILTINS:
            continue
        try:
            module = importlib.import_module(f"adamgen.variants.{name}")
        except ImportError:
            continue
        variants.append(validate(module.spec) if isinstance(module.spec, Spec) else module.spec)
    return variants
