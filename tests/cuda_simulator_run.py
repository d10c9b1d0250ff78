"""Run every generated CUDA kernel under numba's CUDA simulator and print the findings as JSON (one object on stdout).

``tests/test_cuda.py`` runs this file once, in a subprocess, because the simulator must be switched on
(``NUMBA_ENABLE_CUDASIM=1``) before numba is first imported. Everything is small: a few hundred elements, a grid of a few
blocks of 32 threads (so the grid-stride loop goes round several times; reduce kernels too), a few steps. The simulator evaluates with
Python scalar semantics, so it checks the generated code's logic, launch and argument handling, not float32 typing:
the PTX scan in ``test_cuda.py`` covers that.

Every built-in variant under every option set is run (``adamgen.variants.builtin_variants()``), and the variants with
per-tensor reductions of ``cuda_reduction_specs.py`` (generated into ``$ADAMGEN_CACHE_DIR``), each with its default
hyperparameters except a random learning rate, weight decay 0.05 where it has one, and ``maximize`` on for half of them.

Findings, each keyed by the generated module's name:
  "oracle":    dtype -> worst error against the float64 oracle, in units of the tolerance (<= 1 passes)
  "launch":    worst error (same units) with the launch configuration left to the module (its device fallback)
  "errors":    check -> [exception type, message, whether any array or the step counter changed]
  "step_many": check -> worst error (same units) or [exception type, message, whether anything changed]
"""

from __future__ import annotations

import json
import os
import sys
import zlib

import numpy as np

STEPS = 8  # RAdam switches to its rectified update at step 6 with beta2 = 0.999
SHAPE = (15, 20)  # 300 elements
THREADS, BLOCKS = 8, 4  # 32 threads: each goes round the grid-stride loop nine or ten times
REDUCE_THREADS = 4  # a two-level tree per block; the simulator's syncthreads is slow (it polls), so blocks stay small
# Worst error against the float64 oracle, as |actual - expected| <= atol + rtol*|expected|. float64: the kernel and the
# oracle evaluate the same formula in a different order (hoisting, CSE), a few ulps (2**-53) per step. float32: each
# step rounds every value to float32 (2**-24 ~ 6e-8) a handful of times; 8 steps stay below ~1e-6 relative, so 1e-5 is
# a 10x margin that still catches any wrong coefficient (those show at the 1e-3 level).
TOLERANCE = {"float64": (1e-12, 1e-15), "float32": (1e-5, 1e-6)}


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _worst(actual, expected, dtype) -> float:
    rtol, atol = TOLERANCE[dtype]
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape or (np.isnan(actual) != np.isnan(expected)).any():
        return float("inf")
    same = (actual == expected) | np.isnan(actual)  # equal values, infinities included, and NaN where the oracle has NaN
    if same.all():
        return 0.0
    return float(np.max(np.abs(actual - expected)[~same] / (atol + rtol * np.abs(expected[~same]))))


def _hyperparameters(module, rng, maximize):
    """The module's defaults with a random learning rate, weight decay 0.05 where there is one, and `maximize`."""
    chosen = dict(module.HYPERPARAMETERS)
    chosen["lr"] = float(chosen["lr"] * np.exp(rng.uniform(-1, 1)))
    if "weight_decay" in chosen:
        chosen["weight_decay"] = 0.05
    chosen["maximize"] = maximize
    return chosen


def _compare(variant, module, dtype, shape, *, seed, steps=STEPS):
    """Run `steps` steps of the generated kernel and of the oracle from the same float values; the worst error."""
    from numba import cuda

    from adamgen.oracle import Oracle

    rng = np.random.default_rng(seed)
    hyperparameters = _hyperparameters(module, rng, maximize=bool(seed % 2))
    start = rng.standard_normal(shape).astype(dtype)
    oracle = Oracle(variant)
    expected, expected_state = start.astype(np.float64), oracle.init(start)
    param = cuda.to_device(start)
    state = module.init(param)
    for _ in range(steps):
        grad = rng.standard_normal(shape).astype(dtype)
        oracle.step(expected, grad.astype(np.float64), expected_state, **hyperparameters)
        module.step(param, cuda.to_device(grad), state, **hyperparameters)
    worst = _worst(param.copy_to_host(), expected, dtype)
    for name in module.STATES:
        worst = max(worst, _worst(state[name].copy_to_host(), expected_state[name], dtype))
    for name in module.SCALAR_STATES:
        worst = max(worst, _worst(state[name], expected_state[name], "float64"))
    if state["step"] != steps or param.copy_to_host().dtype != np.dtype(dtype):
        return float("inf")
    return worst


def _attempt(call, arrays, state):
    """Run `call`, expecting it to raise; report the exception and whether anything was written."""
    before = [a.copy_to_host() for a in arrays] + [state["step"]]
    try:
        call()
    except Exception as error:  # noqa: BLE001  (reported, then judged by the test)
        kind, message = type(error).__name__, str(error)
    else:
        kind, message = None, ""
    after = [a.copy_to_host() for a in arrays] + [state["step"]]
    changed = any(not np.array_equal(x, y) for x, y in zip(before, after))
    return [kind, message, changed]


def _errors(module):
    """Bad inputs to `step`: each must raise before writing anything."""
    from numba import cuda

    rng = np.random.default_rng(1)
    start = rng.standard_normal(SHAPE).astype(np.float32)
    param, grad = cuda.to_device(start), cuda.to_device(rng.standard_normal(SHAPE).astype(np.float32))
    state = module.init(param)
    arrays = [param, grad] + [state[name] for name in module.STATES]

    def step(param=param, grad=grad, state=state):
        return lambda: module.step(param, grad, state, lr=0.1)

    other_state = dict(state)
    other_state[module.STATES[0]] = cuda.to_device(np.zeros(SHAPE, np.float64))
    aliased_state = dict(state)
    aliased_state[module.STATES[-1]] = param
    missing_state = {key: value for key, value in state.items() if key != module.STATES[0]}
    half = cuda.to_device(start.astype(np.float16))
    half_state = module.init(half)
    strided = cuda.to_device(np.zeros((SHAPE[0], 2 * SHAPE[1]), np.float32))[:, ::2]
    return {
        "host param": _attempt(step(param=start), arrays, state),
        "host grad": _attempt(step(grad=start), arrays, state),
        "float16": _attempt(step(param=half, grad=cuda.to_device(start.astype(np.float16)), state=half_state),
                            arrays, state),
        "grad dtype": _attempt(step(grad=cuda.to_device(start.astype(np.float64))), arrays, state),
        "state dtype": _attempt(step(state=other_state), arrays, state),
        "grad shape": _attempt(step(grad=cuda.to_device(np.zeros(SHAPE[::-1], np.float32))), arrays, state),
        "strided grad": _attempt(step(grad=strided), arrays, state),
        "overlap": _attempt(step(state=aliased_state), arrays, state),
        "missing state": _attempt(step(state=missing_state), arrays, state),
        "stream": _attempt(lambda: module.step(param, grad, state, stream="default"), arrays, state),
        "unknown hyperparameter": _attempt(lambda: module.step(param, grad, state, learning_rate=0.1), arrays, state),
        "valid": _attempt(step(), [], state),  # the same arrays are accepted: the checks above are the only failures
    }


def _step_many(module):
    """`step_many` over views of flat buffers equals `step` on each tensor; a broken layout is refused. Variants that
    read whole tensors (reductions, the element count) refuse `init_many` and `step_many`."""
    from numba import cuda

    sizes = [100, 0, 57, 143]
    offsets = np.cumsum([0] + sizes)
    rng = np.random.default_rng(_seed("many", module.VARIANT))
    hyperparameters = _hyperparameters(module, rng, maximize=False)
    start = rng.standard_normal(offsets[-1]).astype(np.float32)
    flat_param, flat_grad = cuda.to_device(start), cuda.to_device(np.zeros_like(start))
    params = [flat_param[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    grads = [flat_grad[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    if not module.ELEMENTWISE:
        state = module.init(flat_param)
        arrays = [flat_param, flat_grad] + [state[name] for name in module.STATES]
        return {"init_many": _attempt(lambda: module.init_many(params), arrays, state),
                "step_many": _attempt(lambda: module.step_many(params, grads, state), arrays, state)}
    state = module.init_many(params)
    singles = [cuda.to_device(start[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    single_states = [module.init(p) for p in singles]
    for _ in range(3):
        grad = rng.standard_normal(offsets[-1]).astype(np.float32)
        flat_grad.copy_to_device(grad)
        module.step_many(params, grads, state, **hyperparameters)
        for p, s, a, b in zip(singles, single_states, offsets[:-1], offsets[1:]):
            module.step(p, cuda.to_device(grad[a:b]), s, **hyperparameters)
    worst = _worst(flat_param.copy_to_host(), np.concatenate([p.copy_to_host() for p in singles]), "float32")
    for name in module.STATES:
        expected = np.concatenate([s[name].copy_to_host() for s in single_states])
        worst = max(worst, _worst(state[name].copy_to_host(), expected, "float32"))
    if state["step"] != 3 or any(s["step"] != 3 for s in single_states):
        worst = float("inf")

    arrays = [flat_param, flat_grad] + [state[name] for name in module.STATES]
    separate = [cuda.to_device(start[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    mixed = list(grads)
    mixed[2] = cuda.to_device(np.zeros(sizes[2], np.float64))
    return {
        "matches step": worst,
        "reordered": _attempt(lambda: module.step_many(params[::-1], grads[::-1], state), arrays, state),
        "separate allocations": _attempt(lambda: module.step_many(separate, grads, state), arrays, state),
        "mixed dtypes": _attempt(lambda: module.step_many(params, mixed, state), arrays, state),
        "length mismatch": _attempt(lambda: module.step_many(params, grads[:-1], state), arrays, state),
    }


def main() -> None:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
    from numba import cuda

    import adamgen
    from adamgen.variants import builtin_variants

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from cuda_reduction_specs import reduction_variants

    runs = [(adamgen.load(name, target="cuda", **options), variant) for name, options, variant in builtin_variants()]
    runs += [(adamgen.load(variant, target="cuda"), variant) for variant in reduction_variants()]
    findings = {"oracle": {}, "launch": {}, "errors": {}, "step_many": {}}
    for module, variant in runs:
        key = module.VARIANT
        # The simulator runs kernels as Python, so the launch constants are read at each launch, even the reduce
        # kernels' private block size (on a GPU that one is fixed when they compile).
        module.THREADS_PER_BLOCK, module.MAX_BLOCKS = THREADS, BLOCKS
        if module.REDUCE_PHASES:
            module._REDUCE_THREADS = REDUCE_THREADS
        findings["oracle"][key] = {
            dtype: max(_compare(variant, module, dtype, shape, seed=_seed(key, dtype, shape), steps=steps)
                       for shape, steps in ((SHAPE, STEPS), ((1,), 2), ((0,), 2)))
            for dtype in ("float64", "float32")
        }
        findings["step_many"][key] = _step_many(module)
        findings["errors"][key] = _errors(module)
        module.THREADS_PER_BLOCK, module.MAX_BLOCKS = 256, None  # the module's own launch configuration
        findings["launch"][key] = _compare(variant, module, "float32", SHAPE, seed=_seed("launch", key))
    json.dump(findings, sys.stdout)


if __name__ == "__main__":
    main()
