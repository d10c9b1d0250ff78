"""What a variant file declares, and the tolerances and settings that several files share.

A file holds ``VARIANT = VariantTests(name, cases)``: one ``Case`` per comparison of the built-in, under one of its
option sets, with an independent implementation, each with a tolerance per dtype; and, for an option set that has no
reference of its own, a ``Case`` without one that says why. Nothing here imports torch or adamgen at import time.
"""

from __future__ import annotations

import dataclasses
import functools
from types import MappingProxyType
from typing import Mapping

import numpy as np

from ._references import TorchReference


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Element-wise ``|actual - expected| <= atol * scale + rtol * |expected|``. ``scale`` is 1, the rule of
    ``torch.testing.assert_close``, or with ``scaled`` the largest magnitude in the expected array: absolute errors of a
    sum are relative to the size of its terms, and sizes differ widely between arrays (LaProp's exp_avg holds lr: ~1e-3
    of other variants' exp_avg)."""

    rtol: float
    atol: float
    scaled: bool = False

    def absolute(self, expected) -> float:
        """The absolute term of a comparison with ``expected``."""
        if not self.scaled:
            return self.atol
        expected = np.asarray(expected, np.float64)
        largest = float(np.abs(expected).max()) if expected.size else 0.0
        return self.atol * max(largest, np.finfo(np.float64).tiny)


# --- against torch.optim (test_torch_parity.py and the other torch tests) ---------------------------------------------
#
# Parity with torch.optim after 200 steps, unit-scale parameters and gradients.
#
# float32: adamgen and torch evaluate the same formulas in float32 but in a different order (adamgen multiplies by a
# hoisted `1/bias_correction2` under the square root where torch divides by `sqrt(bias_correction2)`; both update
# exp_avg in lerp's form m + (1 - b1)(g - m), but torch's vectorized lerp fuses it into one fma), so each step may
# round differently, by up to half an ulp (2**-24 ~ 6e-8 relative) per operation. rtol is one such rounding per step
# over 200 steps accumulated linearly (200 * 2**-24 ~ 1.2e-5), the worst case for a parameter
# that accumulates its updates; atol covers values near zero (exp_avg changes sign), whose error is relative to the O(1)
# terms they are summed from. Measured: at most ~1.2e-6 absolute (on exp_avg_sq values of order 1..10), ~3e-7 on
# exp_avg; the worst element uses 15 % of its tolerance. A wrong coefficient (beta1 for 1 - beta1, a missing bias
# correction) is off by 1e-3 or more within a few steps; beta2 off by a relative 1e-5 already fails.
# float64: the same reasoning with 2**-53 ~ 1.1e-16 and a few roundings per step: 200 * 4 * 2**-53 ~ 1e-13. Measured at
# most 2e-15 absolute; the worst element uses 3 % of its tolerance.
FLOAT32_VS_TORCH = Tolerance(rtol=1.2e-5, atol=2e-6)
FLOAT64_VS_TORCH = Tolerance(rtol=1e-13, atol=1e-14)
VS_TORCH = MappingProxyType({"float32": FLOAT32_VS_TORCH, "float64": FLOAT64_VS_TORCH})

# --- against a float64 reference (test_catalogue.py) ------------------------------------------------------------------

REFERENCE_STEPS = 100  # steps of each run against a reference; the tolerances below are derived for this many

# Two comparisons per case, with different jobs.
#
# float64 kernel against the float64 reference checks the spec: only the evaluation order differs, a few roundings of
# 2**-53 per step, so 50 per step over REFERENCE_STEPS steps (5.6e-13) is generous; measured at most 6e-15 of the
# array's scale. A coefficient off by 1e-6 relative (lr * (1 + 1e-6)) fails it within 10 steps in every case.
#
# float32 kernel against the float64 reference checks precision. Every host constant (1 - lr*weight_decay,
# lr/bias_correction, ...) is rounded to float32 once per step (<= 2**-24 relative) and every operation rounds; a
# systematic error accumulates linearly, so after REFERENCE_STEPS steps the error is at most
# ~REFERENCE_STEPS * k * 2**-24 of the values' size, with k a handful of roundings per step. k = 8 gives 4.8e-5;
# measured at most 5.7e-6 of the array's scale (Adan with its defaults) and 3e-4 relative on the smallest elements,
# which the atol term (scaled by the array's size) covers.
FLOAT32_VS_REFERENCE = Tolerance(rtol=REFERENCE_STEPS * 8 * 2.0**-24, atol=REFERENCE_STEPS * 8 * 2.0**-24, scaled=True)
FLOAT64_VS_REFERENCE = Tolerance(rtol=REFERENCE_STEPS * 50 * 2.0**-53, atol=REFERENCE_STEPS * 50 * 2.0**-53,
                                 scaled=True)
VS_REFERENCE = MappingProxyType({"float32": FLOAT32_VS_REFERENCE, "float64": FLOAT64_VS_REFERENCE})

# Hyperparameters of the "decay" cases: decay and maximize, so that both signs and the decay term are exercised.
DECAY = MappingProxyType({"weight_decay": 0.05, "maximize": True})
# The decay of the decouple_lr cases: optimi warns for weight_decay >= 1e-3 under decouple_lr (the decay no longer
# shrinks with lr), so they use 5e-4; over 100 steps that moves the parameters by ~5 %, far beyond the tolerance.
DECOUPLE_LR_DECAY = MappingProxyType({"weight_decay": 5e-4, "maximize": True})

# torch.optim's state names for the Adam family
ADAM_STATES = MappingProxyType({"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"})
AMSGRAD_STATES = MappingProxyType({**ADAM_STATES, "max_exp_avg_sq": "max_exp_avg_sq"})


@dataclasses.dataclass(frozen=True)
class TorchOptim:
    """A torch.optim class that computes the same algorithm: the fixed flags that select it, adamgen's state names
    mapped to torch's, and the tolerance for the scalar states (float64 host values in adamgen; torch may keep them in
    float32)."""

    optimizer: str                 # class name in torch.optim
    flags: Mapping                 # fixed torch keyword arguments selecting the same algorithm
    states: Mapping                # adamgen state array -> torch state name
    scalar_states: Mapping = dataclasses.field(default_factory=dict)  # adamgen scalar state -> torch state name
    scalar_tolerance: Tolerance | None = None

    def __post_init__(self):
        assert self.scalar_tolerance or not self.scalar_states, f"{self.optimizer}: scalar states need a tolerance"

    def kwargs(self, hyperparameters: Mapping) -> dict:
        """torch keyword arguments for adamgen's hyperparameters (betas is a tuple in torch), on torch's single-tensor
        path. Hyperparameters not given are left out, so that each library then uses its own default."""
        kwargs = dict(self.flags, foreach=False)
        kwargs.update((name, value) for name, value in hyperparameters.items() if name not in ("beta1", "beta2"))
        if "beta1" in hyperparameters or "beta2" in hyperparameters:
            kwargs["betas"] = (hyperparameters["beta1"], hyperparameters["beta2"])
        return kwargs


@dataclasses.dataclass(frozen=True)
class Case:
    """One built-in under one option set, held against one independent implementation within a tolerance per dtype;
    or, with no reference and a ``reason`` why none is needed, checked against the float64 oracle only.

    ``reference`` is either
    - a ``TorchOptim`` twin, which test_torch_parity.py and the other torch tests drive with hyperparameters they draw
      around the defaults; ``hyperparameters`` are then the ones adamgen.torch's trajectory test adds to its lr and
      betas (test_torch_optimizer.py), or
    - a class with the generated modules' interface (``init``, ``step``, ``states``): a NumPy transcription of a paper,
      or a wrapper around a reference package, which test_catalogue.py runs with ``hyperparameters`` and the schedule
      for REFERENCE_STEPS steps.
    Every case's options and hyperparameters also drive test_catalogue.py's check against the float64 oracle (one
    case per generated module, twins excepted: test_oracle.py checks every module)."""

    id: str                        # unique over the suite: the test id, and part of the seed of the test's data
    reference: TorchOptim | type | None
    hyperparameters: Mapping = dataclasses.field(default_factory=dict)  # {}: the defaults must agree
    options: Mapping = dataclasses.field(default_factory=dict)  # adamgen options (amsgrad=True, decouple_lr=True ...)
    schedule: bool = False         # cosine learning-rate schedule from lr to lr/10 over the run
    tolerance: Mapping = dataclasses.field(default_factory=lambda: VS_REFERENCE)  # dtype name -> Tolerance of arrays
    ties: type | None = None       # a NumPy reference that marks near-tied sign decisions (_references.TIE)
    periodic: Mapping = dataclasses.field(default_factory=dict)  # flag -> k: the flag is on every k-th step
    reason: str = ""               # why there is no reference (only without one)
    variant: str = ""              # the built-in's name: set from the file that declares the case
    shapes: tuple = ()             # the tensors' shapes in test_catalogue.py (): its SHAPES)

    def __post_init__(self):
        assert (self.reference is None) == bool(self.reason), f"{self.id}: a reference, or a reason why there is none"

    @property
    def module(self) -> str:
        """The generated module's name: ``adamgen.load(variant, **options).VARIANT``."""
        return _module_name(self.variant, tuple(sorted(self.options.items())))

    @property
    def twin(self) -> bool:
        """Whether the reference is a torch.optim class."""
        return isinstance(self.reference, TorchOptim)

    @property
    def uses_torch(self) -> bool:
        """Whether running the reference needs torch (a torch.optim twin, or a torch package behind a wrapper)."""
        return self.twin or (isinstance(self.reference, type) and issubclass(self.reference, TorchReference))


@functools.lru_cache(maxsize=None)
def _module_name(variant: str, options: tuple) -> str:
    from adamgen.variants import builtin, with_options

    return with_options(builtin(variant), **dict(options)).name


@dataclasses.dataclass(frozen=True)
class VariantTests:
    """What the suite holds about one built-in besides its spec: its cases, at least one for each option set that
    ``adamgen.variants.builtin_variants()`` yields for it (test_variant_files.py checks that), and the option sets
    beyond those (generated on demand) that the CUDA tests also run it under."""

    name: str                      # the built-in's name, as in adamgen.variants.BUILTINS and the file's name
    cases: tuple[Case, ...]
    on_demand: tuple[Mapping, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "cases", tuple(dataclasses.replace(case, variant=self.name) for case in self.cases))
