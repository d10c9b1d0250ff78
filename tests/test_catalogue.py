"""The built-ins against the independent implementations their files in ``tests/variants/`` declare, and against the
float64 oracle.

Each case (a built-in under one option set, a reference, the hyperparameters both get and the tolerance per dtype) runs
the generated kernel for ``STEPS`` steps in float32 and in float64 on a one-element, an empty, a small 2-D and a
larger-than-``PARALLEL_THRESHOLD`` tensor; the reference runs the same steps in float64 from the same
(float32-representable) start with the same gradients. Parameters and every state the reference has are compared after
step 1, 10 and ``STEPS``.

References are NumPy transcriptions of the papers, or reference packages (torch-optimi, the official AdaBelief package,
adam-atan2-pytorch, schedulefree) run on float64 tensors: those cases are marked ``torch`` and import torch inside the
test only, skipped where it (or the package) is missing; torch and numba work is never interleaved (each brings its own
OpenMP runtime). The cases against a torch.optim twin run in test_torch_parity.py instead.

A second test runs the float64 kernel of every module that has a case here against ``adamgen.oracle.Oracle`` (the spec
evaluated straight through SymPy): a disagreement there is a code-generation bug, a disagreement with a reference a spec
bug. Option sets that have no reference of their own (their files say why) are checked there only.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

import adamgen
from adamgen.oracle import Oracle
from adamgen.variants import builtin, with_options

import problems
import variants
from variants import Case, Tolerance, TorchReference

STEPS = variants.REFERENCE_STEPS
CHECKPOINTS = (1, 10, STEPS)
SHAPES = [(1,), (0,), (5, 7), (problems.PARALLEL_SIZE,)]  # the last runs the prange kernel

# float64 kernel against the float64 oracle of the same spec: only evaluation order differs (measured at most 2.7e-15
# of the array's scale, AdEMAMix).
ORACLE = Tolerance(rtol=1e-12, atol=1e-13, scaled=True)

REFERENCE_CASES = [case for case in variants.CASES if case.reference is not None and not case.twin]


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _schedule(case: Case, hyperparameters: dict, defaults: dict) -> list[dict]:
    """The hyperparameters of every step: fixed, or with a cosine learning rate from lr down to lr/10; the case's
    periodic flags on every k-th step."""
    schedule = [dict(hyperparameters) for _ in range(STEPS)]
    if case.schedule:
        lr = hyperparameters.get("lr", defaults["lr"])
        for t, step in enumerate(schedule, start=1):
            step["lr"] = lr * (0.55 + 0.45 * math.cos(math.pi * (t - 1) / (STEPS - 1)))
    for flag, period in case.periodic.items():
        for t, step in enumerate(schedule, start=1):
            step[flag] = t % period == 0
    return schedule


def _problem(case: Case):
    """Initial parameters and gradients, float32 values (exactly representable in both precisions)."""
    rng = np.random.default_rng(_seed(case.variant, case.hyperparameters.get("lr"), case.schedule))
    shapes = case.shapes or SHAPES
    params = [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]
    grads = [[rng.standard_normal(shape, dtype=np.float32) for shape in shapes] for _ in range(STEPS)]
    return params, grads


def _host_states(module) -> tuple:
    """The names of a module's per-tensor host values: scalar states, row and column states."""
    return (*module.SCALAR_STATES, *getattr(module, "ROW_STATES", ()), *getattr(module, "COL_STATES", ()))


def _run(impl, params, grads, schedule, snapshot):
    """Run ``impl`` (a generated module or a reference with the same interface); snapshots at the checkpoints."""
    params = [p.copy() for p in params]
    states = [impl.init(p) for p in params]
    out = {}
    for t, (step_grads, hyperparameters) in enumerate(zip(grads, schedule), start=1):
        for param, grad, state in zip(params, step_grads, states):
            impl.step(param, grad.astype(param.dtype), state, **hyperparameters)
        if t in CHECKPOINTS:
            out[t] = [snapshot(param, state) for param, state in zip(params, states)]
    return out


def make_reference(case: Case):
    """The case's reference, ready to ``init``: a package wrapper gets the hyperparameters (and decouple_lr) it is
    constructed with."""
    if issubclass(case.reference, TorchReference):
        return case.reference(case.hyperparameters, bool(case.options.get("decouple_lr")))
    return case.reference()


def assert_close(actual, expected, tolerance: Tolerance, what: str, excused=None):
    """Assert the tolerance everywhere except at ``excused`` elements."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    if expected.size == 0:
        return
    atol = tolerance.absolute(expected)
    if excused is not None:
        actual, expected = actual[~excused], expected[~excused]
    np.testing.assert_allclose(actual, expected, rtol=tolerance.rtol, atol=atol, err_msg=what)


@pytest.mark.filterwarnings("ignore:You are using weight_decay")  # optimi under decouple_lr: AdamW's default 1e-2
@pytest.mark.parametrize("case", variants.params(REFERENCE_CASES))
def test_matches_reference(case):
    check_against_reference(case)


def _without_decouple_lr(hyperparameters: dict, defaults: dict) -> dict:
    """The same decay without the decouple_lr option: weight_decay / max_lr (optimi's definition of the option)."""
    h = dict(hyperparameters)
    max_lr = h.pop("max_lr", defaults["max_lr"])
    h["weight_decay"] = h.get("weight_decay", defaults["weight_decay"]) / max_lr
    return h


def check_against_reference(case):
    """Run the case's kernel in float32 and float64 and its reference in float64; compare at the checkpoints."""
    module = adamgen.load(case.variant, **case.options)
    reference = make_reference(case)
    schedule = _schedule(case, case.hyperparameters, module.HYPERPARAMETERS)
    params, grads = _problem(case)

    def ours(param, state):
        snapshot = {"param": param.copy(), **{name: state[name].copy() for name in module.STATES}}
        snapshot.update((name, np.copy(state[name])) for name in _host_states(module))
        return snapshot

    def theirs(param, state):
        return {"param": param.copy(), **{k: np.copy(v) for k, v in reference.states(state).items()}}

    # All numba work first, then the reference (torch and numba must not alternate).
    kernels = {dtype: _run(module, [p.astype(dtype) for p in params], grads, schedule, ours)
               for dtype in ("float32", "float64")}
    expected = _run(reference, [p.astype(np.float64) for p in params], grads, schedule, theirs)

    # Sign decisions (Lion's update, Yogi's second moment) taken on an argument within variants' TIE of zero may go
    # the other way in float32: disagreements are excused at those elements, and only there.
    ties = _run(case.ties(), [p.astype(np.float64) for p in params], grads,
                [_without_decouple_lr(h, module.HYPERPARAMETERS) for h in schedule] if case.options.get("decouple_lr")
                else schedule, lambda param, state: {"near_tie": state["near_tie"].copy()}) if case.ties else None

    for dtype, run in kernels.items():
        for t in CHECKPOINTS:
            for k, (mine, exact) in enumerate(zip(run[t], expected[t])):
                assert set(exact) <= set(mine), (sorted(exact), sorted(mine))
                excused = ties[t][k]["near_tie"] if ties else None
                if excused is not None:
                    assert np.count_nonzero(excused) <= max(2, 0.002 * excused.size), "too many near-ties to test"
                for name, value in exact.items():
                    assert_close(mine[name], value, case.tolerance[dtype],
                                 f"{case.id} {dtype}: {name} of tensor {k} {(case.shapes or SHAPES)[k]} after step {t}",
                                 excused)
    # The run moved the parameters far beyond the tolerance (a kernel that does nothing cannot pass).
    tolerance = case.tolerance["float32"]
    moved = max(np.abs(final["param"] - p).max() for final, p in zip(expected[STEPS], params) if p.size)
    assert moved > 20 * (tolerance.rtol + tolerance.atol) * max(np.abs(p).max() for p in params if p.size)


def _oracle_cases() -> dict:
    """One case per generated module that has a case here or a reason for having none: the last one with maximize
    (so that decay and the sign of the gradient are exercised), else the first."""
    chosen = {}
    for case in variants.CASES:
        if not case.twin and (case.module not in chosen or case.hyperparameters.get("maximize")):
            chosen[case.module] = case
    return chosen


ORACLE_CASES = _oracle_cases()


@pytest.mark.parametrize("case", list(ORACLE_CASES.values()), ids=list(ORACLE_CASES))
def test_float64_kernel_matches_oracle(case):
    """Run the case's float64 kernel and the float64 oracle of its spec; compare at the checkpoints."""
    variant = with_options(builtin(case.variant), **case.options)
    module, oracle = adamgen.load(case.variant, **case.options), Oracle(variant)
    schedule = _schedule(case, case.hyperparameters, module.HYPERPARAMETERS)
    rng = np.random.default_rng(_seed("oracle", variant.name))
    shapes = [(1,), (0,), (40, 25)] + ([(3, 4, 6), ()] if variant.factored else [])
    params = [rng.standard_normal(shape) for shape in shapes]
    grads = [[rng.standard_normal(shape) for shape in shapes] for _ in range(STEPS)]

    def snapshot(param, state):
        return {"param": param.copy(), **{s.name: np.copy(state[s.name]) for s, _ in variant.states},
                **{s.name: np.copy(state[s.name])
                   for s, _ in variant.scalar_states + variant.row_states + variant.col_states}}

    ours = _run(module, params, grads, schedule, snapshot)
    exact = _run(oracle, params, grads, schedule, snapshot)
    for t in CHECKPOINTS:
        for k, (mine, expected) in enumerate(zip(ours[t], exact[t])):
            assert mine.keys() == expected.keys()
            for name in expected:
                assert_close(mine[name], expected[name], ORACLE, f"{variant.name}: {name} of tensor {k} after step {t}")
