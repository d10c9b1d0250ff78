"""Every built-in kernel against the float64 oracle evaluated straight from its own spec.

The oracle (``adamgen.oracle.Oracle``) shares nothing with the code generator past validation: no hoisting, no CSE, no
adamgen printer. So a disagreement here is a code-generation bug (a wrong hoist, a dropped term, a wrong kernel argument
order), independent of whether the spec itself is right, which ``test_torch_parity.py`` checks.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import sympy

import adamgen
from adamgen.oracle import Oracle
from adamgen.spec import ReduceSum, outer_symbols
from adamgen.variants import builtin_variants

import problems
from variants import Tolerance

STEPS = 50
BUILTINS = builtin_variants()

# float64 kernels compute the spec's formula in a different order than the oracle (hoisted host constants, CSE), so each
# step may differ by a few ulps (2**-53 ~ 1.1e-16). 1e-12 relative is the generator's promise; atol only serves values
# crossing zero (exp_avg). Measured after 50 steps: at most ~5e-15 absolute, 2 % of the tolerance.
FLOAT64 = Tolerance(rtol=1e-12, atol=1e-14)
# float32 kernels round every host constant to float32 and every operation in float32: a systematic error of up to
# 2**-24 per constant (AdamW's 1 - lr*weight_decay is the same rounded factor every step) plus a few roundings per
# operation. Five roundings of 2**-24 per step, accumulated linearly over the steps, give rtol; unit-scale values that
# cross zero (exp_avg) carry an absolute error of a few ulps of 1, hence atol. Measured: up to ~2.5e-5 absolute on
# ADOPT's exp_avg_sq (values up to ~40), ~1e-5 on parameters; the worst element uses 40 % of its tolerance.
FLOAT32 = Tolerance(rtol=STEPS * 5 * 2.0**-24, atol=1e-6)
TOLERANCES = {"float64": FLOAT64, "float32": FLOAT32}

# Where a spec jumps per element (sign(x), a Piecewise on per-element values), float32 rounding can put an element whose
# argument is within round-off of the jump on the other side of it: Lion's sign(beta1*m + (1-beta1)*grad) flipped one
# element in 70 000 in a 60-step run (an error of exactly 2*lr). For such specs, and in float32 only, at most one
# element in 10 000 may fall outside the tolerance; float64 allows none, and it runs the same generated code.
JUMP_OUTLIERS = 1e-4

# prodigy and dadapt_adam estimate their step size d from sums over the parameters' displacement (Prodigy's
# <g, p0 - p>, D-Adaptation's s): from their default d0 = 1e-6, parameters move ~1e-4 in 50 steps, which float32
# parameters of size 1 hold to ~1e-3 relative (measured: d 2e-3 off the oracle's, as the reference's own float32 run).
# They start from d0 = 1e-2 here, where they move by ~1 and float32 resolves the displacement. Their scalar states (d,
# its numerator) are float64 host values computed from float32 sums in a float32 run, whose rounding (and the
# cancellation between the numerator's terms) they carry: held to 1e-3 relative there (measured: up to 2.2e-4).
STARTS = {"prodigy": {"d0": 1e-2}, "dadapt_adam": {"d0": 1e-2}}
ESTIMATE_RTOL = 1e-3

SIZES = {"serial": (25, 40), "parallel": (problems.PARALLEL_SIZE,)}  # 1000 elements (2-D), and above PARALLEL_THRESHOLD
# (size, hyperparameters): "random" draws them without weight decay, "decay-maximize" with weight decay > 0 and
# maximize=True. The parallel size runs only the last setting: it is the slow one, and its kernel is the same code.
RUNS = [("serial", "defaults"), ("serial", "random"), ("serial", "decay-maximize"), ("parallel", "decay-maximize")]


def _load(name, options, variant):
    """The generated module, or a skip when generated/ lacks it (test_generated.py's freshness test fails for that)."""
    try:
        return adamgen.load(name, **options)
    except ModuleNotFoundError:
        pytest.skip(f"generated/cpu/{variant.name}.py does not exist yet; run `adamgen generate`")


def run_both(name, options, variant, dtype, shape, setting, *, lr_error=0.0):
    """Run the generated module (in ``dtype``) and the oracle (in float64) for STEPS steps from the same start.

    ``lr_error`` perturbs the learning rate given to the kernel only (to show that the tolerances catch a small error).
    Returns the hyperparameters, the initial parameters, the kernel's (param, state) and the oracle's."""
    module = _load(name, options, variant)
    oracle = Oracle(variant)
    rng = np.random.default_rng(zlib.crc32(f"{variant.name}/{dtype}/{shape}/{setting}".encode()))
    hyperparameters = {} if setting == "defaults" else problems.sample_hyperparameters(
        oracle.defaults, rng, weight_decay=setting == "decay-maximize", maximize=setting == "decay-maximize")
    hyperparameters.update(STARTS.get(name, {}))
    lr = hyperparameters.get("lr", module.HYPERPARAMETERS["lr"])
    perturbed = {**hyperparameters, "lr": lr * (1 + lr_error)}

    initial = rng.standard_normal(shape).astype(dtype)
    param, exact = initial.copy(), initial.astype(np.float64)  # the oracle starts from the same (rounded) values
    state, exact_state = module.init(param), oracle.init(exact)
    for _ in range(STEPS):
        grad = rng.standard_normal(shape).astype(dtype)
        module.step(param, grad, state, **perturbed)
        oracle.step(exact, grad.astype(np.float64), exact_state, **hyperparameters)
    return hyperparameters, initial, (param, state), (exact, exact_state)


def jumps_per_element(variant) -> bool:
    """Whether the variant's per-element result is discontinuous in a per-element value (``sign``, or a condition on
    per-element values): then float32 and float64 can disagree by a whole jump where the argument is near the jump."""
    element = set(variant.element_symbols)
    for symbol, expr in variant.definitions:
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, (sympy.sign, sympy.core.relational.Relational)) and outer_symbols(node) & element:
                return True
        if outer_symbols(expr) & element:
            element.add(symbol)
    return False


def assert_close(actual, expected, tolerance, what, outliers=0.0):
    """``np.testing.assert_allclose``, but with at most ``outliers`` (a fraction) of the elements allowed outside."""
    outside = np.abs(actual.astype(np.float64) - expected) > tolerance.atol + tolerance.rtol * np.abs(expected)
    if outside.sum() <= int(outliers * actual.size):
        return
    np.testing.assert_allclose(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol,
                               err_msg=f"{what} ({outside.sum()} of {actual.size} elements outside)")


def _ids(builtins):
    return [variant.name for _, _, variant in builtins]


@pytest.mark.parametrize("size, setting", RUNS, ids=[f"{size}-{setting}" for size, setting in RUNS])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, options, variant", BUILTINS, ids=_ids(BUILTINS))
def test_kernel_matches_oracle(name, options, variant, dtype, size, setting):
    shape = SIZES[size]
    hyperparameters, initial, (param, state), (exact, exact_state) = run_both(
        name, options, variant, dtype, shape, setting)
    tolerance = TOLERANCES[dtype]
    outliers = JUMP_OUTLIERS if dtype == "float32" and jumps_per_element(variant) else 0.0
    where = f"{variant.name} {dtype} {size} {setting} after {STEPS} steps, hyperparameters {hyperparameters}"

    assert state["step"] == exact_state["step"] == STEPS
    assert param.dtype == np.dtype(dtype) and param.shape == shape
    assert_close(param, exact, tolerance, f"{where}: param", outliers)
    state_names = [symbol.name for symbol, _ in variant.states]
    vectors = [symbol.name for symbol, _ in variant.row_states + variant.col_states]
    assert state_names or vectors, variant.name
    for state_name in vectors:  # row and column states: float64 on the host, what they read float32 in a float32 run
        assert state[state_name].dtype == np.float64 and state[state_name].shape == exact_state[state_name].shape
        assert_close(state[state_name], exact_state[state_name], tolerance, f"{where}: {state_name}", outliers)
    for state_name in state_names:
        assert state[state_name].dtype == np.dtype(dtype) and state[state_name].shape == shape
        assert_close(state[state_name], exact_state[state_name], tolerance, f"{where}: {state_name}", outliers)
    # host scalars are float64 in both, whatever the arrays' dtype; one that reads a sum (adam_mini's vmean) carries the
    # float32 rounding of the sum in a float32 run
    sums = any(expr.has(ReduceSum) for _, expr in variant.definitions)
    rel = FLOAT64.rtol if dtype == "float64" or not sums else ESTIMATE_RTOL if name in STARTS else FLOAT32.rtol
    for symbol, _ in variant.scalar_states:
        assert state[symbol.name] == pytest.approx(exact_state[symbol.name], rel=rel, abs=0.0), where
    # Not a vacuous agreement: the run moved the parameters far beyond the tolerance.
    assert np.abs(param - initial).max() > 100 * tolerance.atol


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, options, variant", BUILTINS, ids=_ids(BUILTINS))
def test_tolerance_catches_a_small_error(name, options, variant, dtype):
    """The tolerances are tight enough that a learning rate off by a small relative amount (1e-2 in float32, 1e-8 in
    float64) fails the comparison: a real code-generation error cannot hide in them."""
    lr_error = {"float32": 1e-2, "float64": 1e-8}[dtype]
    _, _, (param, _), (exact, _) = run_both(name, options, variant, dtype, SIZES["serial"], "defaults",
                                            lr_error=lr_error)
    outliers = JUMP_OUTLIERS if dtype == "float32" and jumps_per_element(variant) else 0.0
    with pytest.raises(AssertionError):
        assert_close(param, exact, TOLERANCES[dtype], "param", outliers)


def test_oracle_reads_old_values_when_a_new_value_is_an_input():
    """prev_grad_new = param is the parameter's old value, even though the oracle writes param first."""
    from adamgen.spec import Spec, grad, param

    spec = Spec("lagged")
    (lr,) = spec.hyperparameters(lr=0.5)
    previous = spec.state("previous")
    spec.update(param, param - lr * grad)
    spec.update(previous, param)
    oracle = Oracle(spec)
    p = np.array([1.0, 2.0])
    state = oracle.init(p)
    oracle.step(p, np.array([1.0, 1.0]), state)
    np.testing.assert_array_equal(p, [0.5, 1.5])
    np.testing.assert_array_equal(state["previous"], [1.0, 2.0])


def test_oracle_evaluates_conditions_on_a_scalar_and_an_element():
    from adamgen.spec import Spec, grad, param, step

    spec = Spec("either")
    (lr,) = spec.hyperparameters(lr=0.5)
    spec.update(param, sympy.Piecewise((param - lr * grad, (step > 1) | (grad > 0)), (param, True)))
    oracle = Oracle(spec)
    p = np.array([1.0, 2.0])
    oracle.step(p, np.array([1.0, -1.0]), oracle.init(p))
    np.testing.assert_array_equal(p, [0.5, 2.0])
