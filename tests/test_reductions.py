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

    with_reductions = {v.name for _, options, v in builtin_variants()
                       if len(lower(maximize(v)).phases) > 1 and "decouple_lr" not in options}  # test_decouple_lr.py
    assert with_reductions == set(MODULES)
    for name in ("lamb", "stableadamw", "mars"):
        reference = references.REFERENCES[f"numpy.{name}"]()
        assert {**reference.defaults, "maximize": False} == __import__("adamgen").load(name).HYPERPARAMETERS


def _reduction_probe():
    """A spec that keeps the sum, mean and norm of the gradient as scalar states, so a test can read them."""
    from adamgen.spec import Spec, grad, param

    spec = Spec("reduction_probe")
    (lr,) = spec.hyperparameters(lr=1e-3)
    seen = [spec.scalar_state(name, init=0.0) for name in ("seen_sum", "seen_mean", "seen_norm")]
    values = spec.sum("total", grad), spec.mean("average", grad), spec.norm("size", grad)
    for state, value in zip(seen, values):
        spec.update(state, value)
    spec.update(param, param - lr * values[1] * grad)
    return spec


@pytest.mark.parametrize("size", [0, 1, 10**7])
def test_reductions_are_float64_accurate_on_float32_tensors(size, cache):
    """Sums over 0, 1 and 10^7 float32 elements: blocks summed in float32, block sums in float64. A plain float32
    running sum of 10^7 values in [0, 1) is off by percent; this must agree with a float64 sum to ~1e-7."""
    import numpy as np

    import adamgen

    module = adamgen.load(_reduction_probe())
    grad = np.random.default_rng(size).random(size, dtype=np.float32)
    param = np.zeros(size, np.float32)
    state = module.init(param)
    module.step(param, grad, state)
    exact = grad.astype(np.float64)
    expected = {"seen_sum": exact.sum(), "seen_mean": exact.sum() / max(size, 1),
                "seen_norm": np.sqrt((exact * exact).sum())}
    for name, value in expected.items():
        assert abs(state[name] - value) <= 1e-7 * abs(value), (name, state[name], value)
    if size:
        np.testing.assert_allclose(param, -1e-3 * expected["seen_mean"] * grad, rtol=1e-6)
