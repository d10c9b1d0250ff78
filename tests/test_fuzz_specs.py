"""Property-based tests of what adamgen makes of malformed, adversarial and valid specs.

Every malformed spec gets a SpecError or GenerateError that names the problem; every valid one a module whose kernels
agree with the float64 oracle, and are finite where the oracle is; nothing raises anything else or runs without bound.
The cases are drawn by fuzzing.py, shared with the fuzz runner fuzz_specs.py (which runs thousands of them): bad,
reserved, look-alike and over-long names, undeclared symbols, unsupported functions and objects, specs beyond the
bounds on size and depth, non-finite, non-real and out-of-range numbers, duplicate, missing and wrong updates,
conditions as numbers and numbers as conditions, a Piecewise without default, reductions in odd places, options on
colliding names, SymPy's constants and rewrites, and random valid rules.

One fixed, derandomized profile: every run draws the same examples. Compiling examples cost Numba compilation
(~1-3 s each), so that property draws a few; validation, lowering and printing are cheap and draw many.
"""

from __future__ import annotations

import ast

import pytest
import sympy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from adamgen.generate import generate
from adamgen.spec import MAX_DEPTH, MAX_NODES, reserved
from adamgen.variants import builtin, with_options

pytestmark = pytest.mark.slow

try:
    from . import fuzzing
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import fuzzing

PROFILE = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Generated modules go to a private cache folder (a module-scoped one: Hypothesis reruns the test function)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAMGEN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@settings(PROFILE, max_examples=120)
@given(fuzzing.cases("malformed"))
def test_malformed_specs_get_a_clear_error_naming_the_problem(case):
    """Validation, options, lowering, printing and rendering for both targets, and compiling the source: a clear error
    naming the problem, or (for the cases that may be valid) a module; never a raw exception."""
    problem = fuzzing.judge(case, fuzzing.outcome(case))
    assert problem is None, f"{problem}\n{case!r}"


@settings(PROFILE, max_examples=12)
@given(st.one_of(fuzzing.cases("valid"), fuzzing.cases("adversarial")))
def test_valid_specs_compile_and_agree_with_the_oracle(case):
    """Random rules (every supported function, flags, reductions, scalar states, maximize), SymPy's constants and
    rewrites, reductions in odd places and options that apply: the kernels in float64 and float32 agree with the oracle
    step by step within their round-off bound, and are finite where it is."""
    result = fuzzing.outcome(case)
    problem = fuzzing.judge(case, result)
    assert problem is None, f"{problem}\n{case!r}"
    if result.kind == "accepted":
        for dtype in ("float64", "float32"):
            fuzzing.check_module(case, dtype)


@settings(PROFILE, max_examples=4, phases=[Phase.generate])
@given(fuzzing.cases("host"))
def test_host_code_gives_inf_and_nan_where_the_oracle_does(case):
    """beta1 = 1 (a division by zero), exp(1000) (an overflow), a negative base under a fractional power, and a division
    by zero after a reduce pass (which must not leave a state updated and the parameter not): the step runs and gives
    inf or nan exactly where the oracle does."""
    for dtype in ("float64", "float32"):
        fuzzing.check_module(case, dtype, nonfinite=True)


@settings(PROFILE, max_examples=3)
@given(fuzzing.cases("at the bounds"))
def test_specs_at_the_bounds_are_accepted(case):
    """A chain of definitions and one expression nested close to MAX_DEPTH, a sum of MAX_NODES / 4 nodes: generated."""
    problem = fuzzing.judge(case, fuzzing.outcome(case))
    assert problem is None, f"{problem}\n{case!r}"


def test_bounds_are_named_in_the_error():
    deep = fuzzing.Plan(hyperparameters=(("lr", 0.1),), definitions=tuple(
        (f"d{k}", "define", ("abs", ("add", ("sym", f"d{k - 1}" if k else "grad"), ("sym", "param"))))
        for k in range(MAX_DEPTH)), updates=(("param", ("sym", f"d{MAX_DEPTH - 1}")),))
    result = fuzzing.outcome(fuzzing.Case("deep", deep, "error"))
    assert result.kind == "error" and f"adamgen takes at most {MAX_DEPTH} (MAX_DEPTH)" in result.message
    wide = fuzzing.Plan(updates=(("param", ("raw", sympy.Add(*(fuzzing.param**k for k in range(2, MAX_NODES))))),))
    result = fuzzing.outcome(fuzzing.Case("wide", wide, "error"))
    assert result.kind == "error" and f"adamgen takes at most {MAX_NODES} (MAX_NODES)" in result.message


def test_the_comparison_catches_a_small_error():
    """The round-off bound is tight enough that a learning rate off by 1e-4 (float32) or 1e-12 (float64) fails."""
    plan = fuzzing.Plan(hyperparameters=(("lr", 0.1), ("beta1", 0.9)), states=(("exp_avg", 0.0),), updates=(
        ("exp_avg", ("add", ("mul", ("sym", "beta1"), ("sym", "exp_avg")), ("sym", "grad"))),
        ("param", ("sub", ("sym", "param"), ("mul", ("sym", "lr"), ("atan", ("sym", "exp_avg_new")))))))
    case = fuzzing.Case("small error", plan, "valid")
    for dtype, error in (("float64", 1e-12), ("float32", 1e-4)):
        counts = fuzzing.check_module(case, dtype)
        assert counts["checked"] == 2 * fuzzing.STEPS * fuzzing.SIZE and counts["left out"] == 0
        with pytest.raises(fuzzing.Mismatch):
            fuzzing.check_module(case, dtype, lr_error=error)


GENERATED = [("adam", {}, "cpu"), ("adam", {}, "cuda"), ("lamb", {"cautious": True}, "cpu"),
             ("lamb", {"cautious": True}, "cuda"), ("adam_atan2", {}, "cpu"), ("nadam", {}, "cpu")]


@pytest.mark.parametrize("name, options, target", GENERATED, ids=[f"{n}-{t}" for n, o, t in GENERATED])
def test_every_name_the_generated_code_uses_is_reserved(name, options, target):
    """Each name that step() and the kernels of a generated module read or write, other than the spec's own names, is
    one a spec may not take: so no spec name can collide with the generated code."""
    variant = with_options(builtin(name), **options)
    own = {s.name for s, _ in (*variant.hyperparameters, *variant.states, *variant.scalar_states, *variant.definitions)}
    arrays = ["param", "grad", *(s.name for s, _ in variant.states)]
    tree = ast.parse(generate(variant, target))
    functions = [f for f in tree.body if isinstance(f, ast.FunctionDef)
                 and (f.name in ("step", "step_many", "step_tables") or f.name.startswith(("_update", "_reduce")))]
    assert {"step", "_update_serial" if target == "cpu" else "_update"} <= {f.name for f in functions}
    used = {node.id for f in functions for node in ast.walk(f) if isinstance(node, ast.Name)}
    used |= {arg.arg for f in functions for arg in ast.walk(f.args) if isinstance(arg, ast.arg)}
    free = sorted(n for n in used - own if not reserved(n, arrays))
    assert not free, f"names the generated code uses that a spec could take: {free}"
