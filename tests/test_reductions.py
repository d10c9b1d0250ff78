"""The variants with per-tensor reductions (LAMB, StableAdamW, MARS) and the cautious forms (timm's C-variants) against
independent implementations and against the float64 oracle, with the machinery of test_catalogue.py.

References: ``numpy.*`` are transcriptions of the papers in references.py; ``optimi.StableAdamW`` is torch-optimi's.
Cautious masks decide on the sign of update * grad: a product within rounding of zero may be decided the other way in
float32, so those elements are excused (and only those), as for Lion's sign."""

import pytest

from adamgen.variants import builtin, builtin_variants, with_options

try:
    from .test_catalogue import DECAY, Case, check_against_oracle, check_against_reference
    from . import references
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import references
    from test_catalogue import DECAY, Case, check_against_oracle, check_against_reference

CAUTIOUS = {"cautious": True}

CASES = (
    Case("lamb-defaults", "lamb", "numpy.lamb", {}),
    Case("lamb-decay", "lamb", "numpy.lamb", dict(lr=3e-3, beta1=0.8, weight_decay=0.1, maximize=True), schedule=True),
    Case("stableadamw-defaults-numpy", "stableadamw", "numpy.stableadamw", {}),
    Case("stableadamw-defaults-optimi", "stableadamw", "optimi.StableAdamW", {}),
    Case("stableadamw-decay-optimi", "stableadamw", "optimi.StableAdamW", dict(lr=3e-3, eps=1e-3, weight_decay=0.1),
         schedule=True),
    Case("stableadamw-decay-numpy", "stableadamw", "numpy.stableadamw",
         dict(lr=3e-3, eps=1e-3, **DECAY), schedule=True),
    Case("mars-defaults", "mars", "numpy.mars", {}),
    Case("mars-decay", "mars", "numpy.mars", dict(gamma=0.1, **DECAY), schedule=True),
    Case("cadamw-defaults", "adamw", "numpy.cadamw", {}, options=CAUTIOUS, ties="numpy.cadamw"),
    Case("cadamw-decay", "adamw", "numpy.cadamw", dict(lr=3e-3, **DECAY), options=CAUTIOUS, schedule=True,
         ties="numpy.cadamw"),
    Case("clion-lr", "lion", "numpy.clion", dict(lr=1e-3), options=CAUTIOUS, ties="numpy.clion"),
    Case("clion-decay", "lion", "numpy.clion", dict(lr=3e-4, **DECAY), options=CAUTIOUS, schedule=True,
         ties="numpy.clion"),
    Case("clamb-defaults", "lamb", "numpy.clamb", {}, options=CAUTIOUS, ties="numpy.clamb"),
    Case("clamb-decay", "lamb", "numpy.clamb", dict(weight_decay=0.1, maximize=True), options=CAUTIOUS,
         ties="numpy.clamb"),
)

# Modules with no independent reference of their own: checked against the oracle only (their parts are checked above).
ORACLE_ONLY = (Case("cadamw_amsgrad", "adamw", "", dict(**DECAY), options={"amsgrad": True, "cautious": True}),)
MODULES = {with_options(builtin(c.variant), **c.options).name: c for c in CASES + ORACLE_ONLY}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_matches_reference(case):
    check_against_reference(case)


@pytest.mark.parametrize("case", list(MODULES.values()), ids=list(MODULES))
def test_float64_kernel_matches_oracle(case):
    check_against_oracle(case)


def test_every_reduction_and_cautious_module_is_covered():
    from adamgen.lower import lower
    from adamgen.transforms import maximize

    with_reductions = {v.name for _, _, v in builtin_variants() if len(lower(maximize(v)).phases) > 1}
    assert with_reductions == set(MODULES)
    for name in ("lamb", "stableadamw", "mars"):
        reference = references.REFERENCES[f"numpy.{name}"]()
        assert {**reference.defaults, "maximize": False} == __import__("adamgen").load(name).HYPERPARAMETERS
