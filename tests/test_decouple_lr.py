"""The ``decouple_lr`` option (optimi's fully decoupled weight decay: decay lr/max_lr * weight_decay per step) against
torch-optimi's ``decouple_lr=True`` and against the float64 oracle, with the machinery of test_catalogue.py.

optimi warns for weight_decay >= 1e-3 under decouple_lr (the decay no longer shrinks with lr), so the cases use 5e-4;
over 100 steps that moves the parameters by ~5 %, far beyond the tolerance. The schedule runs lr from lr down to lr/10,
so lr/max_lr changes every step."""

import numpy as np
import pytest

import adamgen
from adamgen.errors import SpecError
from adamgen.variants import builtin, builtin_variants, with_options

try:
    from .test_catalogue import Case, check_against_oracle, check_against_reference
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from test_catalogue import Case, check_against_oracle, check_against_reference

DECOUPLE = {"decouple_lr": True}
DECAY = dict(weight_decay=5e-4, maximize=True)

CASES = (
    Case("adamw-defaults", "adamw", "optimi.AdamW", {}, options=DECOUPLE),
    Case("adamw-schedule", "adamw", "optimi.AdamW", dict(lr=3e-3, max_lr=4e-3, **DECAY), options=DECOUPLE,
         schedule=True),
    Case("lion-schedule", "lion", "optimi.Lion", dict(lr=3e-4, max_lr=3e-4, beta1=0.95, **DECAY), options=DECOUPLE,
         schedule=True, ties="numpy.lion"),
    Case("adan-schedule", "adan", "optimi.Adan", dict(lr=5e-3, max_lr=5e-3, eps=1e-6, **DECAY), options=DECOUPLE,
         schedule=True),
    Case("stableadamw-schedule", "stableadamw", "optimi.StableAdamW", dict(lr=3e-3, max_lr=6e-3, eps=1e-3, **DECAY),
         options=DECOUPLE, schedule=True),
)

# Combinations with other options: each part is checked against a reference above or in the other catalogue tests.
ORACLE_ONLY = (
    Case("adamw_amsgrad", "adamw", "", dict(max_lr=2e-3, **DECAY), options={"amsgrad": True, **DECOUPLE}),
    Case("cadamw", "adamw", "", dict(max_lr=2e-3, **DECAY), options={"cautious": True, **DECOUPLE}),
    Case("cadamw_amsgrad", "adamw", "", dict(max_lr=2e-3, **DECAY),
         options={"amsgrad": True, "cautious": True, **DECOUPLE}),
    Case("clion", "lion", "", dict(max_lr=2e-4, **DECAY), options={"cautious": True, **DECOUPLE}),
)
MODULES = {with_options(builtin(c.variant), **c.options).name: c for c in CASES + ORACLE_ONLY}


@pytest.mark.filterwarnings("ignore:You are using weight_decay")  # the defaults case: AdamW's default 1e-2
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_matches_optimi(case):
    check_against_reference(case)


@pytest.mark.parametrize("case", list(MODULES.values()), ids=list(MODULES))
def test_float64_kernel_matches_oracle(case):
    check_against_oracle(case)


def test_every_decouple_lr_module_is_covered():
    assert {v.name for _, options, v in builtin_variants() if "decouple_lr" in options} == set(MODULES)


def test_max_lr_defaults_to_the_default_lr():
    for name in ("adamw", "lion", "adan", "stableadamw"):
        defaults = adamgen.load(name, decouple_lr=True).HYPERPARAMETERS
        assert defaults["max_lr"] == adamgen.load(name).HYPERPARAMETERS["lr"] == defaults["lr"], name


def test_decay_scales_with_lr_over_max_lr():
    """With zero gradients AdamW's step is pure decay: param * (1 - lr/max_lr * weight_decay), whatever lr's size."""
    module = adamgen.load("adamw", decouple_lr=True)
    for lr, max_lr in ((1e-3, 1e-3), (1e-1, 1e-1), (5e-2, 1e-1)):
        param = np.full(3, 2.0)
        module.step(param, np.zeros(3), module.init(param), lr=lr, max_lr=max_lr, weight_decay=0.25)
        np.testing.assert_allclose(param, 2.0 * (1 - lr / max_lr * 0.25), rtol=1e-15)


def test_coupled_decay_is_refused():
    with pytest.raises(SpecError, match="weight_decay reaches the update of exp_avg, exp_avg_sq.*"
                                        "decoupled_weight_decay first"):
        with_options(builtin("adam"), decouple_lr=True)
    nadamw = with_options(builtin("nadam"), decoupled_weight_decay=True, decouple_lr=True)
    assert nadamw.name == "nadamw_decouple_lr" and "max_lr" in {h.name for h, _ in nadamw.hyperparameters}
