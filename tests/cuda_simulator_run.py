"""Run every generated CUDA module under numba's CUDA simulator and print the findings as JSON (one object on stdout).

``tests/test_cuda.py`` runs this file once, in a subprocess, because the simulator must be switched on
(``NUMBA_ENABLE_CUDASIM=1``) before numba is first imported. The simulator runs kernels as Python, reading the module's
launch constants at each launch, so they are patched small on the module object: blocks of SIM_THREADS threads, chunks
of SIM_CHUNK elements, at most SIM_BLOCKS blocks per launch. The largest tensor then has several chunks, a launch has
more chunks than blocks (each block loops over chunks), and a reduce kernel's tree has two levels. The simulator
evaluates with Python scalar semantics, so it checks the generated code's logic, launches and argument handling, not
float32 typing: the PTX scan in ``test_cuda.py`` covers that.

Every built-in variant under every option set is run (``adamgen.variants.builtin_variants()``), and the extra variants of
``cuda_reduction_specs.py`` (generated into ``$ADAMGEN_CACHE_DIR``), each with its default hyperparameters except a
random learning rate, weight decay 0.05 where it has one, and ``maximize`` on for about half of them.

Findings, each keyed by the generated module's name:
  "oracle":      dtype -> {"step": worst error, "step_many": worst error, "nonfinite": count}, against the float64
                 oracle in units of the tolerance (<= 1 passes), over every tensor, state array, step count and scalar
                 state; "nonfinite": values the oracle computed that are not finite
  "many_vs_step": dtype -> {"differing": elements of step_many's arrays that differ in any bit from step's, "ulps":
                 their largest difference in units in the last place, "scalar_ulps": the same for the scalar states
                 (float64 host values), "steps_equal": whether the step counts agree, "grouped": whether the
                 variant sums over the whole list (GroupSum), so that step_many is checked against the oracle's
                 step_many and is expected to differ from step}
  "launches":    {"step": [[kernel, blocks, threads], ...] of one step on the largest tensor, "step_many": the same for
                 one step_many call over every tensor, "chunks": [the largest tensor's chunks, every tensor's chunks],
                 "empty": launches of step and step_many on empty tensors only}
  "default":     worst error (units of the tolerance) with the module's own launch constants (CHUNK, THREADS_PER_BLOCK,
                 MAX_BLOCKS = None: the simulator device's fallback), step and step_many
  "init_many":   [number of states, whether each is a fresh state shaped like its tensor, init_many([]) == []]
  "errors":      check -> [exception type, message, whether any array, step count or scalar state changed]; the checks
                 named "step: ..." call step, "step_many: ..." call step_many; "...: valid" ones expect no exception
  "low_precision": for the modules of LOW_PRECISION, storage (bfloat16, float16, float32 parameters with bfloat16
                 states) -> {"differing": elements of any array that differ in any bit from the CPU module's on the same
                 16-bit inputs after CALLS step_many calls and a step, "ulps": their largest difference in ulps of the
                 16-bit format, "dtypes": whether every state kept its format}
"""

from __future__ import annotations

import json
import os
import sys
import zlib

import numpy as np

SIM_THREADS = 4  # a power of 2: the reduce kernels add in a tree (two levels here)
SIM_CHUNK = 16
SIM_TILE = 4  # elements per tile of the factored variants' kernels
SIM_BLOCKS = 2
# The tensors of one step_many call: several chunks (53 = 3 * 16 + 5), empty, one element (1-D and 0-d), exactly one
# chunk, a 2-D one. Each starts from a fresh state at its own step count (the 0-d one at step 5, where RAdam's
# rectification has begun), and the last joins the calls late: step counts differ within a call.
SHAPES = [(53,), (0,), (1,), (), (4, 4), (3, 5)]
FIRST_STEPS = [0, 0, 0, 5, 2, 0]
JOINS = [0, 0, 0, 0, 0, 1]  # the call from which each tensor takes part
CALLS = 3
# Worst error against the float64 oracle, as |actual - expected| <= atol + rtol*|expected|. float64: the kernel and the
# oracle evaluate the same formula in a different order (hoisting, CSE), a few ulps (2**-53) per step. float32: each
# step rounds every value to float32 (2**-24 ~ 6e-8) a handful of times; a few steps stay below ~1e-6 relative, so 1e-5
# is a 10x margin that still catches any wrong coefficient (those show at the 1e-3 level).
_MISSING = object()  # a state entry left out

TOLERANCE = {"float64": (1e-12, 1e-15), "float32": (1e-5, 1e-6)}
# The modules whose kernels also run on 16-bit arrays here: elementwise ones, a reduction, a compensated update,
# stochastic rounding (the same random bits as the CPU kernels').
LOW_PRECISION = ("adamw", "lion", "lamb", "adamw_kahan", "adamw_stochastic_rounding", "adamw_master_weights",
                 "lamb_master_weights")
# storage -> (NumPy dtype of the parameter and gradient, state_dtype for init); master weights (modules with
# REMAINDERS) take bfloat16 parameters only, and refuse float32 and float64 ones: only this check runs them
STORAGE = {"bfloat16": (np.int16, None), "float16": (np.float16, None), "float32+bfloat16": (np.float32, "bfloat16")}


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _worst(actual, expected, dtype) -> float:
    rtol, atol = TOLERANCE[dtype]
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape or (np.isnan(actual) != np.isnan(expected)).any():
        return float("inf")
    same = (actual == expected) | np.isnan(actual)  # equal values, infinities included, NaN where the oracle has NaN
    if same.all():
        return 0.0
    return float(np.max(np.abs(actual - expected)[~same] / (atol + rtol * np.abs(expected[~same]))))


def _bits(values) -> np.ndarray:
    """Values as unsigned integers of their width: equal bits, equal integers (NaN payloads and -0.0 included)."""
    values = np.ascontiguousarray(values)
    return values.view({4: np.uint32, 8: np.uint64}[values.dtype.itemsize])


def _ulps(a, b) -> float:
    """The largest difference between `a` and `b`, in units in the last place of the larger of the two (of their
    dtype); equal values (NaN with NaN) differ by 0, a NaN and a number by infinity."""
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    a, b = a[~same], b[~same]
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(b))).astype(np.float64)
    return float(np.nan_to_num(np.max(np.abs(a.astype(np.float64) - b) / spacing), nan=np.inf))


def _hyperparameters(module, rng, maximize):
    """The module's defaults with a random learning rate, weight decay 0.05 where there is one, and `maximize`."""
    chosen = dict(module.HYPERPARAMETERS)
    chosen["lr"] = float(chosen["lr"] * np.exp(rng.uniform(-1, 1)))
    if "weight_decay" in chosen:
        chosen["weight_decay"] = 0.05
    chosen["maximize"] = maximize
    return chosen


def _host(array):
    return array.copy_to_host()


def _snapshot(module, params, grads, states):
    """Every array of every tensor on the host, the step counts and the scalar states."""
    taken = [_host(a) for a in list(params) + list(grads)]
    for state in states:
        taken += [_host(state[name]) for name in module.STATES if name in state]
        taken += [state.get("step")] + [state.get(name) for name in module.SCALAR_STATES]
    return taken


def _changed(before, after) -> bool:
    return any(not (np.array_equal(_bits(x), _bits(y)) if isinstance(x, np.ndarray) else x == y)
               for x, y in zip(before, after))


def _attempt(module, call, params, grads, states):
    """Run `call`; report the exception it raised (or None) and whether it wrote anything of the given tensors."""
    before = _snapshot(module, params, grads, states)
    try:
        call()
    except Exception as error:  # noqa: BLE001  (reported, then judged by the test)
        kind, message = type(error).__name__, str(error)
    else:
        kind, message = None, ""
    return [kind, message, _changed(before, _snapshot(module, params, grads, states))]


class _Launches:
    """Records the launches of a module's kernels: (kernel name, blocks, threads per block), in order."""

    def __init__(self, module):
        self.module, self.names, self.log = module, [], []
        for k in range(module.REDUCE_PHASES):
            self.names += [f"_reduce{k}", f"_reduce{k}_tables"]
        self.names += ["_update", "_update_tables"]
        self.names = [name for name in self.names if hasattr(module, name)]  # factored: over tables only

    def __enter__(self):
        for name in self.names:
            setattr(self.module, name, _Recorder(name, getattr(self.module, name), self.log))
        return self.log

    def __exit__(self, *exc):
        for name in self.names:
            setattr(self.module, name, getattr(self.module, name).kernel)


class _Recorder:
    def __init__(self, name, kernel, log):
        self.name, self.kernel, self.log = name, kernel, log

    def __getitem__(self, config):
        blocks, threads = config[0], config[1]
        self.log.append([self.name, int(blocks), int(threads)])
        return self.kernel[config]


def _run(variant, module, dtype):
    """`step` per tensor, `step_many` over all of them and the oracle, from the same values: SHAPES, FIRST_STEPS,
    JOINS, CALLS calls. Returns the worst error of step and of step_many, the number of non-finite values the oracle
    computed (none: every comparison compares numbers), and how step_many's results compare with step's."""
    from numba import cuda

    from adamgen.oracle import Oracle

    key = module.VARIANT
    rng = np.random.default_rng(_seed(key, dtype))
    hyperparameters = _hyperparameters(module, rng, maximize=bool(_seed(key) % 2))
    starts = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    oracle = Oracle(variant)
    expected = [start.astype(np.float64) for start in starts]
    expected_states = [oracle.init(start) for start in starts]
    # a grouped variant (GroupSum) steps the list as one group: step_many has its own oracle trajectory
    grouped = [start.astype(np.float64) for start in starts] if module.GROUPED else expected
    grouped_states = [oracle.init(start) for start in starts] if module.GROUPED else expected_states
    singles = [cuda.to_device(start) for start in starts]
    single_states = [module.init(p) for p in singles]
    many = [cuda.to_device(start) for start in starts]
    many_states = module.init_many(many)
    for k, first in enumerate(FIRST_STEPS):
        expected_states[k]["step"] = single_states[k]["step"] = many_states[k]["step"] = grouped_states[k]["step"] = first
    for call in range(CALLS):
        active = [k for k in range(len(SHAPES)) if JOINS[k] <= call]
        grads = {k: rng.standard_normal(SHAPES[k]).astype(dtype) for k in active}
        module.step_many([many[k] for k in active], [cuda.to_device(grads[k]) for k in active],
                         [many_states[k] for k in active], **hyperparameters)
        for k in active:
            module.step(singles[k], cuda.to_device(grads[k]), single_states[k], **hyperparameters)
            oracle.step(expected[k], grads[k].astype(np.float64), expected_states[k], **hyperparameters)
        if module.GROUPED:
            oracle.step_many([grouped[k] for k in active], [grads[k].astype(np.float64) for k in active],
                             [grouped_states[k] for k in active], **hyperparameters)

    def worst(params, states, expected=expected, expected_states=expected_states):
        error = 0.0
        for k in range(len(SHAPES)):
            value = _host(params[k])
            if value.dtype != np.dtype(dtype) or value.shape != SHAPES[k] or states[k]["step"] != \
                    expected_states[k]["step"]:
                return float("inf")
            error = max(error, _worst(value, expected[k], dtype))
            for name in module.STATES:
                error = max(error, _worst(_host(states[k][name]), expected_states[k][name], dtype))
            # float64 host values (scalar, row and column states), from sums in the arrays' dtype if it reduces
            for name in (*module.SCALAR_STATES, *getattr(module, "ROW_STATES", ()), *getattr(module, "COL_STATES", ())):
                scalar_dtype = dtype if module.REDUCE_PHASES else "float64"
                error = max(error, _worst(np.asarray(states[k][name], np.float64), expected_states[k][name],
                                          scalar_dtype))
        return error

    nonfinite = sum(int(np.count_nonzero(~np.isfinite(values))) for values in expected)
    nonfinite += sum(int(np.count_nonzero(~np.isfinite(state[name]))) for state in expected_states
                     for name in module.STATES)
    compared = {"differing": 0, "ulps": 0.0, "scalar_ulps": 0.0, "steps_equal": True, "grouped": module.GROUPED}
    for k in range(len(SHAPES)):
        pairs = [(_host(many[k]), _host(singles[k]))]
        pairs += [(_host(many_states[k][name]), _host(single_states[k][name])) for name in module.STATES]
        for a, b in pairs:
            compared["differing"] += int(np.count_nonzero(_bits(a) != _bits(b)))
            compared["ulps"] = max(compared["ulps"], _ulps(a, b))
        for name in module.SCALAR_STATES:
            compared["scalar_ulps"] = max(compared["scalar_ulps"], _ulps(np.float64(many_states[k][name]),
                                                                         np.float64(single_states[k][name])))
        compared["steps_equal"] &= many_states[k]["step"] == single_states[k]["step"]
    return worst(singles, single_states), worst(many, many_states, grouped, grouped_states), nonfinite, compared


def _launches(module):
    """The launches of one step on the largest tensor, one step_many over all tensors, and of both on empty tensors."""
    from numba import cuda

    params = [cuda.to_device(np.ones(shape, np.float32)) for shape in SHAPES]
    grads = [cuda.to_device(np.ones(shape, np.float32)) for shape in SHAPES]
    states = module.init_many(params)
    with _Launches(module) as step:
        module.step(params[0], grads[0], states[0])
    with _Launches(module) as step_many:
        module.step_many(params, grads, states)
    empty = [k for k, shape in enumerate(SHAPES) if not np.prod(shape)]
    with _Launches(module) as none:
        module.step(params[empty[0]], grads[empty[0]], states[empty[0]])
        module.step_many([params[k] for k in empty], [grads[k] for k in empty], [states[k] for k in empty])
        module.step_many([], [], [])
    steps = [state["step"] for state in states]
    chunks = [-(-int(np.prod(shape)) // SIM_CHUNK) for shape in SHAPES]
    return {"step": step, "step_many": step_many, "chunks": [chunks[0], sum(chunks)], "empty": none,
            "steps after": steps}


def _default_launch(variant, module):
    """One step_many call over two float32 tensors and one step, with the module's own launch constants; worst error
    against the oracle."""
    from numba import cuda

    from adamgen.oracle import Oracle

    rng = np.random.default_rng(_seed("default", module.VARIANT))
    hyperparameters = _hyperparameters(module, rng, maximize=False)
    oracle = Oracle(variant)
    shapes = [(1,), (300,)]
    starts = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    grads = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    params = [cuda.to_device(start) for start in starts]
    states = module.init_many(params)
    module.step_many(params, [cuda.to_device(g) for g in grads], states, **hyperparameters)
    single, single_state = cuda.to_device(starts[1]), module.init(cuda.to_device(starts[1]))
    module.step(single, cuda.to_device(grads[1]), single_state, **hyperparameters)
    expected = [start.astype(np.float64) for start in starts]
    expected_states = [oracle.init(start) for start in starts]
    if module.GROUPED:  # step_many is one step of the group; step, of the tensor alone
        alone, alone_state = starts[1].astype(np.float64), oracle.init(starts[1])
        oracle.step(alone, grads[1].astype(np.float64), alone_state, **hyperparameters)
        oracle.step_many(expected, [g.astype(np.float64) for g in grads], expected_states, **hyperparameters)
    else:
        for k in range(len(shapes)):
            oracle.step(expected[k], grads[k].astype(np.float64), expected_states[k], **hyperparameters)
        alone, alone_state = expected[1], expected_states[1]
    worst = 0.0
    for k in range(len(shapes)):
        pairs = [(params[k], states[k], expected[k], expected_states[k])]
        pairs += [(single, single_state, alone, alone_state)] if k == 1 else []
        for param, state, expected_param, expected_state in pairs:
            worst = max(worst, _worst(_host(param), expected_param, "float32"))
            for name in module.STATES:
                worst = max(worst, _worst(_host(state[name]), expected_state[name], "float32"))
            if state["step"] != 1:
                worst = float("inf")
    return worst


def _init_many(module):
    from numba import cuda

    params = [cuda.to_device(np.ones(shape, dtype)) for shape, dtype in [((3, 2), np.float32), ((0,), np.float64)]]
    states = module.init_many(params)
    fresh = []
    for param, state in zip(params, states):
        fresh.append(state["step"] == 0
                     and all(state[name].shape == param.shape and state[name].dtype == param.dtype
                             and (_host(state[name]) == (_host(param) if module.STATE_INIT[name] == "param"
                                                         else module.STATE_INIT[name])).all()
                             for name in module.STATES)
                     and all(state[name] == value for name, value in module.SCALAR_STATES.items()))
    distinct = len({id(state[name]) for state in states for name in module.STATES}) == len(states) * len(module.STATES)
    return [len(states), all(fresh) and distinct, module.init_many([]) == []]


def _read_only(array):
    """A simulator device array over read-only memory (what an exporter's read-only flag looks like here)."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    values = _host(array)
    values.flags.writeable = False
    return FakeCUDAArray(values)


def _errors(module):
    """Bad input to `step` and `step_many`: each must raise before writing anything; then the arrays are accepted."""
    from numba import cuda

    rng = np.random.default_rng(1)
    shapes = [(4, 5), (7,), (4, 5)]
    starts = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    params = [cuda.to_device(start) for start in starts]
    grads = [cuda.to_device(rng.standard_normal(shape).astype(np.float32)) for shape in shapes]
    states = module.init_many(params)
    for k, state in enumerate(states):
        state["step"] = k  # distinct step counts: a changed count shows
    first, last = (module.STATES[0], module.STATES[-1]) if module.STATES else (None, None)
    findings = {}

    def check(name, call, *, also=()):
        """`call`'s outcome; nothing of the tensors above (nor of `also`, more arrays) may change."""
        findings[name] = _attempt(module, call, params + [a for a, _ in also], grads + [g for _, g in also], states)

    def with_state(k, **changes):
        state = dict(states[k])
        for name, value in changes.items():
            if value is _MISSING:
                del state[name]
            else:
                state[name] = value
        return state

    p, g, s = params[0], grads[0], states[0]
    one = lambda **kw: (lambda: module.step(kw.get("param", p), kw.get("grad", g), kw.get("state", s),
                                            **kw.get("hyper", {"lr": 0.1})))  # noqa: E731
    strided = cuda.to_device(np.zeros((shapes[0][0], 2 * shapes[0][1]), np.float32))[:, ::2]
    check("step: host param", one(param=starts[0]))
    check("step: host grad", one(grad=_host(g)))
    if first is not None:  # a state array to break (factored variants may have none)
        check("step: host state", one(state=with_state(0, **{last: _host(s[last])})))
    check("step: int32", one(param=cuda.to_device(starts[0].astype(np.int32)),
                              grad=cuda.to_device(starts[0].astype(np.int32))))
    check("step: grad dtype", one(grad=cuda.to_device(starts[0].astype(np.float64))))
    if first is not None:  # a state array to break (factored variants may have none)
        check("step: state dtype", one(state=with_state(0, **{first: cuda.to_device(np.zeros(shapes[0], np.float64))})))
    check("step: grad shape", one(grad=cuda.to_device(np.zeros(shapes[0][::-1], np.float32))))
    if first is not None:  # a state array to break (factored variants may have none)
        check("step: state shape", one(state=with_state(0, **{last: cuda.to_device(np.zeros(20, np.float32))})))
    check("step: strided grad", one(grad=strided))
    check("step: read-only param", one(param=_read_only(p)))
    if first is not None:  # a state array to break (factored variants may have none)
        check("step: state overlaps param", one(state=with_state(0, **{last: p})))
    if first is not None:  # a state array to break (factored variants may have none)
        check("step: grad is a state", one(grad=s[first]))
    if first is not None:  # a state array to break (factored variants may have none)
        check("step: missing state", one(state=with_state(0, **{first: _MISSING})))
    check("step: state not a dict", one(state=list(s.items())))
    check("step: bad step count", one(state=with_state(0, step=-1)))
    check("step: stream", one(hyper={"stream": "default"}))
    check("step: unknown hyperparameter", one(hyper={"learning_rate": 0.1}))
    check("step: betas", one(hyper={"betas": (0.9, 0.999)}))
    check("step: hyperparameter value", one(hyper={"lr": "0.1"}))
    if module.SCALAR_STATES:
        check("step: bad scalar state", one(state=with_state(0, **{next(iter(module.SCALAR_STATES)): "1.0"})))
    vectors = (*getattr(module, "ROW_STATES", ()), *getattr(module, "COL_STATES", ()))
    if vectors:  # row and column states: float64 host arrays of the parameter's row (column) shape
        check("step: row or column state shape", one(state=with_state(0, **{vectors[0]: np.zeros(3)})))
        check("step: row or column state on the device",
              one(state=with_state(0, **{vectors[0]: cuda.to_device(s[vectors[0]])})))
        check("step: row or column state dtype",
              one(state=with_state(0, **{vectors[-1]: s[vectors[-1]].astype(np.float32)})))
        check("step: missing row or column state", one(state=with_state(0, **{vectors[-1]: _MISSING})))

    def many(ps=None, gs=None, ss=None, **hyper):
        return lambda: module.step_many(params if ps is None else ps, grads if gs is None else gs,
                                        states if ss is None else ss, **(hyper or {"lr": 0.1}))

    def replaced(items, k, value):
        items = list(items)
        items[k] = value
        return items

    other = cuda.to_device(starts[1].astype(np.float64))
    overlapping = cuda.to_device(np.zeros(12, np.float32))  # two more tensors' params: elements [0, 7) and [5, 12)
    extra = cuda.to_device(np.zeros(7, np.float32))
    check("step_many: host param", many(ps=replaced(params, 1, starts[1])))
    check("step_many: host grad", many(gs=replaced(grads, 2, _host(grads[2]))))
    check("step_many: float64 tensor among float32", many(ps=replaced(params, 1, other),
                                                         gs=replaced(grads, 1, cuda.to_device(np.zeros(7))),
                                                         ss=replaced(states, 1, module.init(other))))
    check("step_many: grad dtype", many(gs=replaced(grads, 2, cuda.to_device(np.zeros(shapes[2])))))
    check("step_many: grad shape", many(gs=replaced(grads, 1, cuda.to_device(np.zeros(8, np.float32)))))
    check("step_many: strided grad", many(gs=replaced(grads, 2, strided)))
    if first is not None:  # a state array to break (factored variants may have none)
        read_only = with_state(1, **{last: _read_only(states[1][last])})
    if first is not None:  # a state array to break (factored variants may have none)
        check("step_many: read-only state", many(ss=replaced(states, 1, read_only)))
    check("step_many: params overlap", many(ps=params + [overlapping[:7], overlapping[5:]], gs=grads + [extra, extra],
                                            ss=states + module.init_many([extra, extra])),
          also=[(overlapping, extra)])
    check("step_many: tensor listed twice", many(ps=params + [params[1]], gs=grads + [grads[1]],
                                                 ss=states + [states[1]]))
    if first is not None:  # a state array to break (factored variants may have none)
        shared = with_state(2, **{first: states[0][first]})
    if first is not None:  # a state array to break (factored variants may have none)
        check("step_many: state shared by two tensors", many(ss=replaced(states, 2, shared)))
    check("step_many: grad is another tensor's param", many(gs=replaced(grads, 2, params[0])))
    check("step_many: length mismatch", many(gs=grads[:-1]))
    if first is not None:  # a state array to break (factored variants may have none)
        check("step_many: missing state", many(ss=replaced(states, 1, with_state(1, **{last: _MISSING}))))
    check("step_many: one state for all", many(ss=module.init(params[0])))
    check("step_many: bad step count", many(ss=replaced(states, 2, with_state(2, step=1.5))))
    check("step_many: stream", many(stream=3.5))
    check("step_many: unknown hyperparameter", many(betas=(0.9, 0.999)))
    check("step_many: hyperparameter value", many(lr=None))
    if module.SCALAR_STATES:
        name = next(iter(module.SCALAR_STATES))
        check("step_many: bad scalar state", many(ss=replaced(states, 1, with_state(1, **{name: [1.0]}))))
    # The same arrays are accepted: the checks above are the only failures. A gradient may serve two tensors (it is
    # only read), and an empty list is a step of nothing.
    check("step: valid", one())
    check("step_many: valid, no tensors", lambda: module.step_many([], [], []))
    check("step_many: valid, shared gradient", many(gs=replaced(grads, 2, grads[0])))
    return findings


def _ordered(bits):
    """16-bit float bits (int16 or uint16 arrays) as integers in the order of their values."""
    bits = bits.view(np.int16).astype(np.int32)
    return np.where(bits < 0, -(bits & 0x7FFF), bits)


def _stored_as(values, dtype):
    """float32 ``values`` as an array of ``dtype`` holds them; int16: bfloat16 bits, rounded to nearest even."""
    if dtype != np.int16:
        return values.astype(dtype)
    bits = values.view(np.uint32).astype(np.uint64)
    return np.asarray((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16, np.uint16).view(np.int16)


def _master(param, remainder):
    """The float32 values that bfloat16 parameter bits and int16 remainders hold together (master_weights): the
    parameter's bits, less one where the remainder is negative, as the high half, the remainder as the low half."""
    high = (param.view(np.uint16).astype(np.uint32) - (remainder < 0)) & 0xFFFF
    return ((high << 16) | remainder.view(np.uint16).astype(np.uint32)).view(np.float32)


def _low_precision(variant, module):
    """The CUDA module on 16-bit arrays against the CPU module on copies of the same arrays (both compute in float32
    and round once per store: equal but for the order of a reduction's sums)."""
    import adamgen
    from numba import cuda

    cpu = adamgen.load(variant, target="cpu")
    found = {}
    for storage, (dtype, state_dtype) in STORAGE.items():
        if module.REMAINDERS and storage != "bfloat16":
            continue
        rng = np.random.default_rng(_seed(module.VARIANT, storage))
        shapes = [shape for shape in SHAPES if np.prod(shape)]
        host = [_stored_as(np.asarray(rng.standard_normal(shape), np.float32), dtype) for shape in shapes]
        device = [cuda.to_device(p) for p in host]
        host_states, device_states = cpu.init_many(host, state_dtype), module.init_many(device, state_dtype)
        for k in range(CALLS + 1):
            grads = [p[::-1].copy() if p.ndim == 1 else p.T.copy().reshape(p.shape) for p in host]
            hyper = {"lr": 1e-2 * (k + 1)}
            if k < CALLS:
                cpu.step_many(host, grads, host_states, **hyper)
                module.step_many(device, [cuda.to_device(g) for g in grads], device_states, **hyper)
            else:
                cpu.step(host[0], grads[0], host_states[0], **hyper)
                module.step(device[0], cuda.to_device(grads[0]), device_states[0], **hyper)
        pairs = [(h, _host(d)) for h, d in zip(host, device)]
        pairs += [(hs[name], _host(ds[name])) for hs, ds in zip(host_states, device_states) for name in module.STATES
                  if name not in module.REMAINDERS]
        for name in module.REMAINDERS:  # the float32 values that parameters and remainders hold, compared in ulps
            pairs += [(_master(h, hs[name]), _master(_host(d), _host(ds[name])))
                      for h, d, hs, ds in zip(host, device, host_states, device_states)]
        differing, ulps = 0, 0
        for a, b in pairs:
            if a.dtype == np.float32:
                bad = _bits(a) != _bits(b)
                worst = _ulps(a, b)
            else:
                bad = a.view(np.uint16) != b.view(np.uint16)
                worst = float(np.abs(_ordered(a) - _ordered(b)).max(initial=0))
            differing += int(bad.sum())
            ulps = max(ulps, worst)
        dtypes = all(_host(ds[name]).dtype == hs[name].dtype for hs, ds in zip(host_states, device_states)
                     for name in module.STATES)
        found[storage] = {"differing": differing, "ulps": ulps, "dtypes": dtypes}
    return found


def main() -> None:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
    import adamgen
    from adamgen.variants import builtin_variants

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from cuda_reduction_specs import extra_variants

    runs = [(adamgen.load(name, target="cuda", **options), variant) for name, options, variant in builtin_variants()]
    runs += [(adamgen.load(variant, target="cuda"), variant) for variant in extra_variants()]
    only = os.environ.get("ADAMGEN_SIM_ONLY")  # a comma-separated subset of module names, for working on one variant
    if only:
        runs = [(module, variant) for module, variant in runs if module.VARIANT in only.split(",")]
    findings = {"oracle": {}, "many_vs_step": {}, "launches": {}, "default": {}, "init_many": {}, "errors": {},
                "low_precision": {}}
    for module, variant in runs:
        key = module.VARIANT
        own = module.THREADS_PER_BLOCK, module.CHUNK, module.MAX_BLOCKS
        # Small blocks hand over the GIL often: the simulator's threads wait on each other at every syncthreads.
        sys.setswitchinterval(1e-4)
        module.THREADS_PER_BLOCK, module.CHUNK, module.MAX_BLOCKS = SIM_THREADS, SIM_CHUNK, SIM_BLOCKS
        own_tile = getattr(module, "TILE", None)
        if own_tile:  # factored: tiles of a few elements, so rows are cut into several tiles' partial sums
            module.TILE = SIM_TILE
        if not module.REMAINDERS:  # master weights refuse float32 and float64 parameters: only low_precision runs them
            findings["oracle"][key], findings["many_vs_step"][key] = {}, {}
            for dtype in ("float64", "float32"):
                step, step_many, nonfinite, compared = _run(variant, module, dtype)
                findings["oracle"][key][dtype] = {"step": step, "step_many": step_many, "nonfinite": nonfinite}
                findings["many_vs_step"][key][dtype] = compared
            findings["launches"][key] = _launches(module)
            findings["init_many"][key] = _init_many(module)
            findings["errors"][key] = _errors(module)
        if key in LOW_PRECISION:
            findings["low_precision"][key] = _low_precision(variant, module)
        sys.setswitchinterval(5e-3)
        module.THREADS_PER_BLOCK, module.CHUNK, module.MAX_BLOCKS = own
        if own_tile:
            module.TILE = own_tile
        if not module.REMAINDERS:
            findings["default"][key] = _default_launch(variant, module)
    json.dump(findings, sys.stdout)


if __name__ == "__main__":
    main()
