"""The declarative table of the built-in variants that torch.optim implements: one entry per variant and option set.

Each entry says which generated module it is, which ``torch.optim`` class computes the same algorithm and with which
fixed flags, how adamgen's state names map to torch's, and the tolerance per dtype for comparisons with torch. The table
holds the built-ins that torch implements; ``sample_hyperparameters`` draws hyperparameters for any variant. Nothing
here imports torch, so the table is usable where torch is not installed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# A size above the CPU kernels' switch from the serial to the parallel kernel (PARALLEL_THRESHOLD = 32768).
PARALLEL_SIZE = 70_000


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Element-wise ``|actual - expected| <= atol + rtol * |expected|``, the rule of ``torch.testing.assert_close``."""

    rtol: float
    atol: float


# Parity with torch.optim after 200 steps, unit-scale parameters and gradients.
#
# float32: adamgen and torch evaluate the same formulas in float32 but in a different order (adamgen multiplies by a
# hoisted `1/bias_correction2` under the square root where torch divides by `sqrt(bias_correction2)`; both update
# exp_avg in lerp's form m + (1 - b1)(g - m), but torch's vectorized lerp fuses it into one fma), so each step may round differently, by up to half an ulp (2**-24 ~ 6e-8 relative) per operation. rtol is
# one such rounding per step over 200 steps accumulated linearly (200 * 2**-24 ~ 1.2e-5), the worst case for a parameter
# that accumulates its updates; atol covers values near zero (exp_avg changes sign), whose error is relative to the O(1)
# terms they are summed from. Measured: at most ~1.2e-6 absolute (on exp_avg_sq values of order 1..10), ~3e-7 on
# exp_avg; the worst element uses 15 % of its tolerance. A wrong coefficient (beta1 for 1 - beta1, a missing bias
# correction) is off by 1e-3 or more within a few steps; beta2 off by a relative 1e-5 already fails.
# float64: the same reasoning with 2**-53 ~ 1.1e-16 and a few roundings per step: 200 * 4 * 2**-53 ~ 1e-13. Measured at
# most 2e-15 absolute; the worst element uses 3 % of its tolerance.
FLOAT32_VS_TORCH = Tolerance(rtol=1.2e-5, atol=2e-6)
FLOAT64_VS_TORCH = Tolerance(rtol=1e-13, atol=1e-14)
# NAdam: torch keeps the running product `mu_product` as a float32 0-d tensor, even for float64 parameters (its
# `_get_scalar_dtype()` follows the default dtype), while adamgen keeps it as a float64 host scalar. Its rounding
# reaches the update coefficients `lr*(1-mu)/(1-mu_product)` through the cancellation `1 - mu_product`, so parity with
# torch's NAdam is float32-limited in both dtypes. Measured: ~7e-6 absolute with float32 parameters (14 % of the
# tolerance), ~7e-11 absolute and ~2e-8 relative with float64 parameters (7 %).
NADAM_FLOAT32_VS_TORCH = Tolerance(rtol=1.2e-5, atol=2e-5)
NADAM_FLOAT64_VS_TORCH = Tolerance(rtol=1e-7, atol=1e-9)
# torch's float32 mu_product is rounded twice per step (the float64 factor mu cast to float32, then the product): over
# 200 steps at most (1 + 2**-24)**400 - 1 ~ 2.4e-5 relative. The product decays geometrically (mu ~ 0.45): within ~110
# steps it falls below float32's smallest normal number, where torch's value loses its relative precision and then
# underflows to 0 while adamgen's float64 keeps it; that is the absolute slack.
MU_PRODUCT_VS_TORCH = Tolerance(rtol=2.5e-5, atol=float(np.finfo(np.float32).tiny))


@dataclasses.dataclass(frozen=True)
class Case:
    """One built-in variant under one option set, and how torch.optim computes the same thing."""

    name: str                      # built-in name for adamgen.load
    options: dict                  # options for adamgen.load (amsgrad=True, decoupled_weight_decay=True)
    module: str                    # the generated module's name: adamgen.load(name, **options).VARIANT
    torch_optimizer: str           # class name in torch.optim
    torch_options: dict            # fixed torch keyword arguments selecting the same algorithm
    states: dict                   # adamgen state array -> torch state name
    scalar_states: dict = dataclasses.field(default_factory=dict)  # adamgen scalar state -> torch state name
    tolerance: dict = dataclasses.field(default_factory=lambda: {
        "float32": FLOAT32_VS_TORCH, "float64": FLOAT64_VS_TORCH})  # numpy dtype name -> state arrays and param
    scalar_tolerance: Tolerance = MU_PRODUCT_VS_TORCH                 # scalar states

    @property
    def id(self) -> str:
        return self.module

    def torch_kwargs(self, hyperparameters: dict) -> dict:
        """torch.optim keyword arguments for adamgen's hyperparameters (betas is a tuple in torch).

        Hyperparameters not given are left out, so each library then uses its own default."""
        kwargs = dict(self.torch_options, foreach=False)  # the single-tensor reference path
        for name, value in hyperparameters.items():
            if name in ("beta1", "beta2"):
                continue
            kwargs[name] = value
        if "beta1" in hyperparameters or "beta2" in hyperparameters:
            kwargs["betas"] = (hyperparameters["beta1"], hyperparameters["beta2"])
        return kwargs

    def sample(self, rng: np.random.Generator, *, weight_decay: bool, maximize: bool) -> dict:
        """Random hyperparameters around this variant's defaults; see ``sample_hyperparameters``."""
        return sample_hyperparameters(builtin_defaults(self.name, self.options), rng, weight_decay=weight_decay,
                                      maximize=maximize)


def builtin_defaults(name: str, options: dict) -> dict:
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


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


_ADAM_STATES = {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}
_AMSGRAD_STATES = {**_ADAM_STATES, "max_exp_avg_sq": "max_exp_avg_sq"}
_NADAM = dict(torch_optimizer="NAdam", states=_ADAM_STATES, scalar_states={"mu_product": "mu_product"},
              tolerance={"float32": NADAM_FLOAT32_VS_TORCH, "float64": NADAM_FLOAT64_VS_TORCH})

# The options that torch.optim has a flag for: a built-in with another option (cautious, ...) has no torch counterpart.
TORCH_OPTIONS = frozenset({"amsgrad", "decoupled_weight_decay"})

# Every built-in whose spec names a torch.optim reference, under every option set that torch has flags for
# (test_torch_parity checks that).
CASES: tuple[Case, ...] = (
    Case("adam", {}, "adam", "Adam", {"amsgrad": False}, _ADAM_STATES),
    Case("adam", {"amsgrad": True}, "adam_amsgrad", "Adam", {"amsgrad": True}, _AMSGRAD_STATES),
    Case("adamw", {}, "adamw", "AdamW", {"amsgrad": False}, _ADAM_STATES),
    Case("adamw", {"amsgrad": True}, "adamw_amsgrad", "AdamW", {"amsgrad": True}, _AMSGRAD_STATES),
    Case("adamax", {}, "adamax", "Adamax", {}, {"exp_avg": "exp_avg", "exp_inf": "exp_inf"}),
    Case("nadam", {}, "nadam", torch_options={"decoupled_weight_decay": False}, **_NADAM),
    Case("nadam", {"decoupled_weight_decay": True}, "nadamw", torch_options={"decoupled_weight_decay": True}, **_NADAM),
    Case("radam", {}, "radam", "RAdam", {"decoupled_weight_decay": False}, _ADAM_STATES),
    Case("radam", {"decoupled_weight_decay": True}, "radamw", "RAdam", {"decoupled_weight_decay": True}, _ADAM_STATES),
)

CASE_IDS = [case.id for case in CASES]


def random_shapes(rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Tensor shapes for one run: one element, an empty tensor, a small 2-D tensor, one above the parallel threshold."""
    return [
        (1,),
        (0,),
        (int(rng.integers(2, 9)), int(rng.integers(2, 17))),
        (PARALLEL_SIZE + int(rng.integers(0, 1000)),),
    ]
