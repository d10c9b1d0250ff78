"""Inputs shared by the comparison tests: hyperparameters drawn around a variant's defaults, and tensor shapes that
reach both CPU kernels. Works for any variant; nothing here imports torch."""

from __future__ import annotations

import math

import numpy as np

# A size above the CPU kernels' switch from the serial to the parallel kernel (PARALLEL_THRESHOLD = 32768).
PARALLEL_SIZE = 70_000


def builtin_defaults(name: str, options) -> dict:
    """A built-in's hyperparameter defaults, read from its spec (``maximize`` included)."""
    from adamgen.variants import builtin, with_options

    variant = with_options(builtin(name), **options)
    return {**{symbol.name: default for symbol, default in variant.hyperparameters}, "maximize": False}


def sample_hyperparameters(defaults: dict, rng: np.random.Generator, *, weight_decay: bool, maximize: bool) -> dict:
    """Random hyperparameters in the ranges optimizers are used with, drawn around the variant's own defaults (Python
    floats, as a user passes them). Works for any variant:

    - ``lr``: the default times 10**U(-1, 1); ``eps``: the default times 10**U(-1, 2);
      ``momentum_decay``: the default times 4**U(-1, 1);
    - every ``beta<k>``: ``1 - beta`` is the default's times a log-uniform factor in [0.5, 10], at most 0.2 (Adam's
      beta1 0.9 -> [0.8, 0.95], beta2 0.999 -> [0.99, 0.9995]);
    - ``weight_decay``: log-uniform in [1e-3, 1e-1] if asked for, else 0;
    - ``maximize`` as asked; any other hyperparameter keeps its default (only the spec knows its valid range).
    """
    drawn = {}
    for name, default in defaults.items():
        if name == "maximize":
            drawn[name] = maximize
        elif name == "weight_decay":
            drawn[name] = _log_uniform(rng, 1e-3, 1e-1) if weight_decay else 0.0
        elif name == "lr":
            drawn[name] = default * _log_uniform(rng, 0.1, 10)
        elif name == "eps":
            drawn[name] = default * _log_uniform(rng, 0.1, 100)
        elif name == "momentum_decay":
            drawn[name] = default * _log_uniform(rng, 0.25, 4)
        elif name.startswith("beta") and name[4:].isdigit() and 0 < default < 1:
            one_minus = 1 - default
            drawn[name] = 1 - _log_uniform(rng, 0.5 * one_minus, min(10 * one_minus, 0.2))
        else:
            drawn[name] = default
    return drawn


def sample_for(case, rng: np.random.Generator, *, weight_decay: bool, maximize: bool) -> dict:
    """``sample_hyperparameters`` around the defaults of the module that ``case`` (a ``variants.Case``) runs."""
    return sample_hyperparameters(builtin_defaults(case.variant, case.options), rng, weight_decay=weight_decay,
                                  maximize=maximize)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def random_shapes(rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Tensor shapes for one run: one element, an empty tensor, a small 2-D tensor, one above the parallel threshold."""
    return [
        (1,),
        (0,),
        (int(rng.integers(2, 9)), int(rng.integers(2, 17))),
        (PARALLEL_SIZE + int(rng.integers(0, 1000)),),
    ]
