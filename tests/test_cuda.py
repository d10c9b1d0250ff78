"""The CUDA target: generated modules, their kernels under the simulator, their PTX, and real GPUs when present.

Without a GPU (this file's normal case on a developer machine and in CI):
  - every generated cuda module is fresh, self-contained, imports without a GPU, compiles nothing at import, and carries
    the same metadata and entry points as its cpu twin; host arrays are refused with a TypeError naming the cpu target;
  - every module runs under numba's CUDA simulator (``cuda_simulator_run.py``): `step` and `step_many` against the
    float64 oracle, `step_many` equal to `step` to the bit, one launch per pass, blocks looping over chunks, and bad
    input to both refused before anything is written;
  - every kernel, both forms (over one tensor's arrays, and over address and chunk tables), is compiled to PTX for
    compute capability 7.5, 8.0 and 9.0 (``cuda_ptx_run.py``) and scanned: a float32 kernel has no ``.f64``
    instruction and no ``.local`` memory (the simulator uses Python scalars, so only the PTX shows float64 promotion).
The simulator run and the PTX compilation run in background subprocesses started with this file's first test (the
simulator on one core, the PTX shards on the others); the tests that read their findings come last.
The kernels are those of every built-in variant and option set, plus the extra variants of
``cuda_reduction_specs.py`` (reductions; options no built-in ships), generated into a temporary cache.
With a GPU, the tests compare with the CPU kernels and with torch.optim on CUDA tensors, and check streams, numba
device arrays, `step_many` on torch tensors of many sizes, other exporters' arrays, and adamgen.torch on CUDA
parameters.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import statistics
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import adamgen
from adamgen.generate import check_builtins
from adamgen.variants import builtin_variants

import problems
import variants

pytestmark = pytest.mark.cuda

try:
    from .cuda_ptx_run import LOW_PRECISION, kernel_forms, kernel_names, printed, ptx_by_capability, ptx_problems, \
        remainders, storages
    from .cuda_reduction_specs import extra_variants
    from .cuda_simulator_run import CALLS, FIRST_STEPS, JOINS, SHAPES, SIM_BLOCKS, SIM_CHUNK, SIM_THREADS
    from .cuda_simulator_run import LOW_PRECISION as SIMULATED_LOW_PRECISION
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from cuda_ptx_run import LOW_PRECISION, kernel_forms, kernel_names, printed, ptx_by_capability, ptx_problems, \
        remainders, storages
    from cuda_reduction_specs import extra_variants
    from cuda_simulator_run import CALLS, FIRST_STEPS, JOINS, SHAPES, SIM_BLOCKS, SIM_CHUNK, SIM_THREADS
    from cuda_simulator_run import LOW_PRECISION as SIMULATED_LOW_PRECISION

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed (pip install -e '.[cuda]')")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMPUTE_CAPABILITIES = [(7, 5), (8, 0), (9, 0)]
GPU = cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="no CUDA GPU on this machine (numba.cuda.is_available() is False)")
# Seconds the background runs may take: on a 2-core machine the simulator's takes about 75 s, the PTX compilation
# (one shard) about 120 s, each on one core.
BACKGROUND_TIMEOUT = 600
# The tests that read the background runs' findings wait for them (minutes), so they are slow as well as cuda.
reads_background_runs = pytest.mark.slow


BUILTINS = {variant.name: (name, options, variant) for name, options, variant in builtin_variants()}
EXTRA = {variant.name: variant for variant in extra_variants()}
ALL = list(BUILTINS) + list(EXTRA)
# the modules that step float32 and float64 parameters: all but master weights (bfloat16 parameters only)
FLOAT = [key for key in ALL if not remainders(BUILTINS[key][2] if key in BUILTINS else EXTRA[key])]


def _load_all(target, cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAMGEN_CACHE_DIR", str(cache))
        loaded = {key: adamgen.load(name, target=target, **options) for key, (name, options, _) in BUILTINS.items()}
        loaded.update((key, adamgen.load(variant, target=target)) for key, variant in EXTRA.items())
    return loaded


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """Generated cuda module by variant name: the shipped built-ins and the extra variants, generated into a temporary
    cache."""
    return _load_all("cuda", tmp_path_factory.mktemp("adamgen-cache"))


@pytest.fixture(scope="module")
def cpu_modules(tmp_path_factory):
    """The cpu twins of `modules`."""
    return _load_all("cpu", tmp_path_factory.mktemp("adamgen-cache-cpu"))


def _variant(key):
    return BUILTINS[key][2] if key in BUILTINS else EXTRA[key]


def _printed(key):
    """The variant as the generator prints it for the cuda target: its kernel arrays and phases."""
    return printed(_variant(key))


def _dispatchers(module):
    """The module's CUDA kernels by name (not its device functions, such as the runtime's ``_maximum``)."""
    return {name: value for name, value in vars(module).items()
            if hasattr(value, "py_func") and hasattr(value, "signatures") and callable(getattr(value, "configure", 0))
            and not getattr(value, "targetoptions", {}).get("device")}


# --- generated modules ---------------------------------------------------------------------------------------------


def test_generated_cuda_modules_are_fresh():
    assert check_builtins(targets=("cuda",)) == []


@pytest.mark.parametrize("key", list(BUILTINS))
def test_module_interface(key):
    name, options, _ = BUILTINS[key]
    module, twin = adamgen.load(name, target="cuda", **options), adamgen.load(name, target="cpu", **options)
    assert module.__name__ == f"adamgen.generated.cuda.{key}"
    assert module.TARGET == "cuda" and twin.TARGET == "cpu"
    for attribute in ("VARIANT", "STATES", "STATE_INIT", "SCALAR_STATES", "HYPERPARAMETERS", "REFERENCE", "SPEC_HASH",
                      "REDUCE_PHASES", "ELEMENTWISE"):
        assert getattr(module, attribute) == getattr(twin, attribute), attribute
    for function in ("step", "step_many", "step_tables"):  # the cpu twin's parameters, and `stream` before **unknown
        ours = inspect.signature(getattr(module, function)).parameters
        theirs = list(inspect.signature(getattr(twin, function)).parameters.values())
        where = len(theirs) - (theirs[-1].kind is inspect.Parameter.VAR_KEYWORD)
        assert list(ours) == [p.name for p in theirs[:where]] + ["stream"] + [p.name for p in theirs[where:]], function
        assert ours["stream"].kind is inspect.Parameter.KEYWORD_ONLY and ours["stream"].default is None
        keywords = {n: p.default for n, p in ours.items() if p.kind is p.KEYWORD_ONLY}
        assert keywords == {**module.HYPERPARAMETERS, "stream": None}, function
    for function in ("init", "init_many"):
        assert inspect.signature(getattr(module, function)) == inspect.signature(getattr(twin, function))
    # Two kernels per pass, one over a tensor's arrays and one over tables; nothing else is a kernel. Kernels compile
    # on first launch: importing compiled nothing, so a machine without a GPU can import the module.
    lines = _printed(key)
    assert module.REDUCE_PHASES == len(lines.reductions)
    kernels = _dispatchers(module)
    forms = ("_tables",) if lines.factored else ("", "_tables")  # row and column sums: over tables only
    assert sorted(kernels) == sorted(n + form for n in kernel_names(lines.phases) for form in forms)
    assert all(kernel.signatures == [] for kernel in kernels.values())


def test_modules_import_only_ctypes_math_sys_numpy_numba():
    """Read by `ast`, and imported by path in a fresh interpreter without a GPU: neither adamgen nor torch nor sympy is
    loaded, and no kernel is compiled."""
    files = sorted((ROOT / "generated" / "cuda").glob("*.py"))
    assert len(files) == len(BUILTINS) + 1
    for path in files:
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        assert {name.partition(".")[0] for name in imported} <= {"ctypes", "math", "sys", "numpy", "numba"}, \
            (path.name, imported)
    script = (
        "import importlib.util, sys\n"
        f"for path in {[str(p) for p in files if p.name != '__init__.py']!r}:\n"
        "    spec = importlib.util.spec_from_file_location('m_' + path.rsplit('/', 1)[1][:-3], path)\n"
        "    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "    kernels = [v for v in vars(module).values() if hasattr(v, 'py_func') and hasattr(v, 'signatures')\n"
        "               and not v.targetoptions.get('device')]\n"
        "    forms = 1 if hasattr(module, 'ROW_STATES') else 2  # factored modules: kernels over tables only\n"
        "    assert len(kernels) == forms * (module.REDUCE_PHASES + 1), path\n"
        "    assert all(k.signatures == [] for k in kernels), path\n"
        "print(sorted(m for m in ('adamgen', 'torch', 'sympy') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_host_arrays_are_refused_before_anything_is_written():
    module = adamgen.load("adam", target="cuda")
    param, grad = np.ones(8, np.float32), np.ones(8, np.float32)
    with pytest.raises(TypeError, match=r"param must be a CUDA array.*target='cpu'"):
        module.init(param)
    with pytest.raises(TypeError, match=r"param must be a CUDA array"):
        module.init_many([param])
    state = {"step": 0, "exp_avg": np.zeros(8, np.float32), "exp_avg_sq": np.zeros(8, np.float32)}
    with pytest.raises(TypeError, match=r"adam\.step: param must be a CUDA array.*got ndarray"):
        module.step(param, grad, state, lr=0.1)
    with pytest.raises(TypeError, match=r"adam\.step_many: params\[0\] must be a CUDA array.*got ndarray"):
        module.step_many([param], [grad], [state], lr=0.1)
    assert state["step"] == 0 and (param == 1).all() and not state["exp_avg"].any() and not state["exp_avg_sq"].any()


@pytest.mark.parametrize("key", ["adamw", "nadam", "clamb"])
def test_a_step_of_nothing_needs_no_device(key):
    """No tensors (or only empty ones, under the simulator): nothing to launch, no device asked for, no error."""
    module = adamgen.load(BUILTINS[key][0], target="cuda", **BUILTINS[key][1])
    assert module.init_many([]) == []
    assert module.step_many([], [], [], lr=0.1) is None
    width = 2 + len(module.STATES)
    steps, scalars = module.step_tables(np.zeros((0, width), np.int64), np.zeros(0, np.int64), np.zeros(0),
                                        {name: np.zeros(0) for name in module.SCALAR_STATES}, np.float32)
    assert steps.shape == (0,) and set(scalars) == set(module.SCALAR_STATES)


@pytest.mark.torch
def test_cpu_torch_tensors_are_refused():
    torch = pytest.importorskip("torch")
    module = adamgen.load("adamw", target="cuda")
    param = torch.ones(8, requires_grad=True)
    state = {"step": 0, "exp_avg": torch.zeros(8), "exp_avg_sq": torch.zeros(8)}
    with pytest.raises(TypeError, match="param must be a CUDA array.*got Tensor"):
        module.init(param)
    with pytest.raises(TypeError, match="param must be a CUDA array"):
        module.step(param, torch.ones(8), state)
    with pytest.raises(TypeError, match=r"params\[0\] must be a CUDA array"):
        module.step_many([param], [torch.ones(8)], [state])
    assert state["step"] == 0 and not state["exp_avg"].any() and (param == 1).all()


def test_user_spec_gets_a_cuda_module(spec_file, cache):
    module = adamgen.load(spec_file, target="cuda")
    assert module.TARGET == "cuda" and module.VARIANT == "laggy_adam"
    assert "adamgen generate laggy_adam.py --target cuda" in Path(module.__file__).read_text()


# --- a real GPU ----------------------------------------------------------------------------------------------------


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here (a CPU build of torch, or no GPU)")
    return torch


def _rng(*parts):
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def _gpu_hyperparameters(module):
    hyperparameters = dict(module.HYPERPARAMETERS, maximize=True)
    if "weight_decay" in hyperparameters:
        hyperparameters["weight_decay"] = 0.05
    return hyperparameters


# Sizes for GPU tests: one element (1-D and 0-d), empty, a small 2-D one, one of two chunks (CHUNK = 16384); all
# together below the CPU kernels' parallel threshold (2^15), so that only their serial kernels need compiling.
GPU_SHAPES = [(1,), (), (0,), (33, 65), (30_000,)]


def _assert_close_but_for_ties(actual, expected, tolerance, what):
    """Within `tolerance` but for a handful of elements in 10^5: where a rule branches on a value that is zero to within
    the last bits (Lion's sign, a maximum of two near-equal values), an element may take the other branch."""
    rtol, atol = tolerance
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    outside = ~np.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    assert outside.sum() <= actual.size // 20_000, (what, int(outside.sum()), actual[outside][:5],
                                                    expected[outside][:5])


GPU_TOLERANCE = {"float32": (1e-5, 1e-6), "float64": (1e-12, 1e-14)}


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("key", FLOAT)
def test_gpu_matches_cpu_kernels_on_numba_device_arrays(modules, cpu_modules, key, dtype):
    """Same starting values, same gradients, 12 steps: the GPU's `step` per tensor and `step_many` over all tensors
    (the last joining after 4 steps) against the CPU kernels' `step` and `step_many`. The GPU contracts multiply-adds
    into FMAs and adds a reduction's sums in another order, so results differ in the last bits."""
    module, twin = modules[key], cpu_modules[key]
    rng = _rng("gpu-cpu", key, dtype)
    hyperparameters = _gpu_hyperparameters(module)
    starts = [rng.standard_normal(shape).astype(dtype) for shape in GPU_SHAPES]
    singles = [cuda.to_device(start) for start in starts]
    single_states = [module.init(p) for p in singles]
    many = [cuda.to_device(start) for start in starts]
    many_states = module.init_many(many)
    expected = [start.copy() for start in starts]
    expected_states = [twin.init(p) for p in expected]
    expected_many = [start.copy() for start in starts]
    expected_many_states = twin.init_many(expected_many)
    for step in range(12):
        active = list(range(len(starts))) if step >= 4 else list(range(len(starts) - 1))
        grads = [rng.standard_normal(GPU_SHAPES[k]).astype(dtype) for k in active]
        device_grads = [cuda.to_device(g) for g in grads]
        for k, grad, device_grad in zip(active, grads, device_grads):
            module.step(singles[k], device_grad, single_states[k], **hyperparameters)
            twin.step(expected[k], grad, expected_states[k], **hyperparameters)
        module.step_many([many[k] for k in active], device_grads, [many_states[k] for k in active], **hyperparameters)
        twin.step_many([expected_many[k] for k in active], grads, [expected_many_states[k] for k in active],
                       **hyperparameters)
    for ours, our_states, theirs, their_states, form in [(singles, single_states, expected, expected_states, "step"),
                                                         (many, many_states, expected_many, expected_many_states,
                                                          "step_many")]:
        for k, shape in enumerate(GPU_SHAPES):
            what = f"{key} {form} {shape}"
            _assert_close_but_for_ties(ours[k].copy_to_host(), theirs[k], GPU_TOLERANCE[dtype], what)
            for name in module.STATES:
                _assert_close_but_for_ties(our_states[k][name].copy_to_host(), their_states[k][name],
                                           GPU_TOLERANCE[dtype], f"{what} {name}")
            for name in module.SCALAR_STATES:
                assert our_states[k][name] == pytest.approx(their_states[k][name], rel=1e-12), f"{what} {name}"
            assert our_states[k]["step"] == their_states[k]["step"] == (12 if k < len(GPU_SHAPES) - 1 else 8), what


@needs_gpu
@pytest.mark.torch
@pytest.mark.parametrize("case", variants.TWINS, ids=[case.id for case in variants.TWINS])
def test_gpu_matches_torch_optim_on_cuda_tensors(case):
    """The independent reference: torch.optim on CUDA parameters that require grad, 50 steps, float32, against `step`
    on one tensor and `step_many` over two (one of several chunks)."""
    torch = _torch_cuda()
    module = adamgen.load(case.variant, target="cuda", **case.options)
    rng = _rng("gpu-torch", case.id)
    hyperparameters = problems.sample_for(case, rng, weight_decay=True, maximize=False)
    starts = [torch.tensor(rng.standard_normal(shape).astype(np.float32), device="cuda")
              for shape in [(64, 129), (70_017,)]]
    single = torch.nn.Parameter(starts[0].clone())
    many = [torch.nn.Parameter(start.clone()) for start in starts]
    theirs = [torch.nn.Parameter(start.clone()) for start in starts]
    optimizer = getattr(torch.optim, case.reference.optimizer)(theirs, **case.reference.kwargs(hyperparameters))
    single_state, many_states = module.init(single), module.init_many(many)
    assert all(s[name].is_cuda and not s[name].requires_grad for s in [single_state] + many_states
               for name in module.STATES)
    for _ in range(50):
        grads = [torch.randn_like(start) for start in starts]
        module.step(single, grads[0], single_state, **hyperparameters)
        module.step_many(many, grads, many_states, **hyperparameters)
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        optimizer.step()
    tolerance = case.tolerance["float32"]
    for ours, state, reference in [(single, single_state, theirs[0])] + list(zip(many, many_states, theirs)):
        torch.testing.assert_close(ours.detach(), reference.detach(), rtol=tolerance.rtol, atol=tolerance.atol)
        for name, torch_name in case.reference.states.items():
            torch.testing.assert_close(state[name], optimizer.state[reference][torch_name], rtol=tolerance.rtol,
                                       atol=tolerance.atol)
        assert state["step"] == 50


@needs_gpu
@pytest.mark.torch
@pytest.mark.parametrize("function", ["step", "step_many"])
def test_gpu_launches_on_torch_current_stream_and_explicit_streams(function):
    torch = _torch_cuda()
    module = adamgen.load("lamb", target="cuda")  # a reduce pass: its sums come back to the host mid-step
    start = torch.randn(1 << 20, device="cuda")
    grads = [torch.randn_like(start) for _ in range(3)]

    def run(param, state, grad, **stream):
        if function == "step":
            module.step(param, grad, state, lr=1e-2, **stream)
        else:
            module.step_many([param], [grad], [state], lr=1e-2, **stream)

    reference, reference_state = start.clone(), module.init(start)
    for grad in grads:
        run(reference, reference_state, grad)
    torch.cuda.synchronize()

    side = torch.cuda.Stream()
    param, state = start.clone(), module.init(start)
    torch.cuda.synchronize()
    with torch.cuda.stream(side):  # launched on `side`, in order with torch's own work there
        for grad in grads:
            run(param, state, grad)
        after = param * 1  # queued on `side` behind the kernels
    side.synchronize()
    torch.testing.assert_close(after, reference, rtol=0, atol=0)

    # explicit: a torch stream (__cuda_stream__), a numba stream, a raw handle
    raw = torch.cuda.Stream()
    for stream in (torch.cuda.Stream(), cuda.stream(), raw.cuda_stream):
        param, state = start.clone(), module.init(start)
        torch.cuda.synchronize()
        for grad in grads:
            run(param, state, grad, stream=stream)
        torch.cuda.synchronize()
        torch.testing.assert_close(param, reference, rtol=0, atol=0)
        assert state["step"] == 3


@needs_gpu
def test_gpu_numba_device_arrays_and_explicit_stream():
    module = adamgen.load("adam", target="cuda")
    twin = adamgen.load("adam", target="cpu")
    hosts = [np.linspace(-1, 1, 5000, dtype=np.float32), np.linspace(2, 3, 20_000, dtype=np.float32)]
    expected = [host.copy() for host in hosts]
    expected_states = twin.init_many(expected)
    stream = cuda.stream()
    params = [cuda.to_device(host, stream=stream) for host in hosts]
    states = module.init_many(params)
    single = cuda.to_device(hosts[0], stream=stream)
    single_state = module.init(single)
    for k in range(5):
        grads = [np.full_like(host, 0.1 * (k + 1)) for host in hosts]
        device_grads = [cuda.to_device(g, stream=stream) for g in grads]
        module.step_many(params, device_grads, states, stream=stream)
        module.step(single, device_grads[0], single_state, stream=stream)
        twin.step_many(expected, grads, expected_states)
    results = [param.copy_to_host(stream=stream) for param in params + [single]]
    stream.synchronize()
    for result, value in zip(results, expected + [expected[0]]):
        np.testing.assert_allclose(result, value, rtol=1e-5, atol=1e-6)
    assert [s["step"] for s in states + [single_state]] == [5, 5, 5]


class _CountingLaunches:
    def __init__(self, kernel, launches):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, config):
        self.launches.append(config)
        return self.kernel[config]


@needs_gpu
@pytest.mark.torch
@pytest.mark.parametrize("key", ["adamw", "nadam", "lamb", "clamb"])
def test_gpu_step_many_on_torch_tensors_of_many_sizes(key):
    """Sixty separately allocated torch tensors, 0 to 3 chunks and one large one, one added after two calls, on 3
    blocks: one launch per pass per call; each tensor as `step` on it alone (on the device's full grid) would leave
    it (to the bit for elementwise variants; for reductions within float32 rounding of the block sums, whose kernels
    the two forms compile separately)."""
    torch = _torch_cuda()
    name, options, _ = BUILTINS[key]
    module = adamgen.load(name, target="cuda", **options)
    rng = _rng("gpu-many", key)
    sizes = [int(n) for n in rng.integers(0, 3 * module.CHUNK, 59)] + [0, 1, 1 << 20]
    generator = torch.Generator(device="cuda").manual_seed(0)
    starts = [torch.randn(n, device="cuda", generator=generator) for n in sizes]
    many = [start.clone() for start in starts]
    singles = [start.clone() for start in starts]
    many_states, single_states = module.init_many(many), [module.init(p) for p in singles]
    kernels = [f"_reduce{k}_tables" for k in range(module.REDUCE_PHASES)] + ["_update_tables"]
    for call in range(4):
        active = list(range(len(sizes))) if call >= 2 else list(range(len(sizes) - 1))
        grads = [torch.randn(sizes[k], device="cuda", generator=generator) for k in active]
        launches = []
        originals = {name: getattr(module, name) for name in kernels}
        try:
            for name in kernels:
                setattr(module, name, _CountingLaunches(originals[name], launches))
            module.MAX_BLOCKS = 3  # each block loops over many chunks, of many tensors
            module.step_many([many[k] for k in active], grads, [many_states[k] for k in active], lr=1e-2,
                             weight_decay=0.1)
        finally:
            module.MAX_BLOCKS = None
            for name in kernels:
                setattr(module, name, originals[name])
        assert [config[:2] for config in launches] == [(3, module.THREADS_PER_BLOCK)] * len(kernels)
        for k, grad in zip(active, grads):
            module.step(singles[k], grad, single_states[k], lr=1e-2, weight_decay=0.1)
    torch.cuda.synchronize()
    for k in range(len(sizes)):
        pairs = [(many[k], singles[k])] + [(many_states[k][n], single_states[k][n]) for n in module.STATES]
        for ours, theirs in pairs:
            if module.ELEMENTWISE:
                assert torch.equal(ours, theirs), (key, sizes[k])
            else:
                torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        assert many_states[k]["step"] == single_states[k]["step"] == (4 if k < len(sizes) - 1 else 2)
        for n in module.SCALAR_STATES:  # float64 host values: equal but for NumPy's SIMD functions (a few ulps)
            assert many_states[k][n] == pytest.approx(single_states[k][n], rel=1e-14, abs=0)


class _Exported:
    """Another library's CUDA array: only __cuda_array_interface__, with its exporter's read-only flag."""

    def __init__(self, tensor, readonly):
        interface = dict(tensor.__cuda_array_interface__)
        interface["data"] = (interface["data"][0], readonly)
        self.__cuda_array_interface__ = interface
        self.tensor = tensor  # keeps the memory alive


@needs_gpu
@pytest.mark.torch
def test_gpu_arrays_of_other_exporters_and_their_read_only_flag():
    torch = _torch_cuda()
    module = adamgen.load("adamw", target="cuda")
    param, grad = torch.randn(1000, device="cuda"), torch.randn(1000, device="cuda")
    state = module.init(param)
    before = param.clone()
    with pytest.raises(ValueError, match=r"adamw\.step: param is read-only"):
        module.step(_Exported(param, True), grad, state)
    with pytest.raises(ValueError, match=r"adamw\.step_many: params\[0\] is read-only"):
        module.step_many([_Exported(param, True)], [grad], [state])
    assert torch.equal(param, before) and not state["exp_avg"].any() and state["step"] == 0
    module.step(_Exported(param, False), _Exported(grad, True), state)  # a read-only gradient is fine: it is only read
    assert not torch.equal(param, before) and state["step"] == 1


@needs_gpu
@pytest.mark.torch
def test_gpu_adamgen_torch_adamw_matches_torch_adamw():
    """adamgen.torch on CUDA parameters (tables of addresses, one launch per group) against torch.optim.AdamW."""
    torch = _torch_cuda()
    import adamgen.torch

    generator = torch.Generator(device="cuda").manual_seed(3)
    shapes = [(256, 64), (64,), (0,), (70_017,), ()]
    starts = [torch.randn(shape, device="cuda", generator=generator) for shape in shapes]
    ours = [torch.nn.Parameter(s.clone()) for s in starts]
    theirs = [torch.nn.Parameter(s.clone()) for s in starts]
    settings = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    optimizer, reference = adamgen.torch.AdamW(ours, **settings), torch.optim.AdamW(theirs, foreach=False, **settings)
    for _ in range(20):
        grads = [torch.randn(shape, device="cuda", generator=generator) for shape in shapes]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        optimizer.step()
        reference.step()
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q, rtol=1.2e-5, atol=2e-6)
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(optimizer.state[p][name], reference.state[q][name], rtol=1.2e-5, atol=2e-6)


@needs_gpu
@pytest.mark.torch
@pytest.mark.parametrize("storage", ["bfloat16", "float16", "float32+bfloat16"])
def test_gpu_16_bit_storage_matches_the_cpu_kernels_and_torch(storage):
    """AdamW on CUDA tensors of 16-bit storage (bfloat16 and float16 parameters, float32 parameters with bfloat16
    states; tables of addresses through adamgen.torch): the parameters and states equal the CPU kernels' on the same
    inputs to the bit (float32 arithmetic with IEEE division and square root on both), and, from the same state each
    step, torch's fused CUDA AdamW within 2 ulps on at most 1 element in 1,000 (its float32 betas; see
    test_low_precision.py)."""
    torch = _torch_cuda()
    import adamgen.torch

    dtype = torch.float32 if storage.startswith("float32") else getattr(torch, storage)
    state_dtype = torch.bfloat16 if storage.endswith("+bfloat16") else None
    generator = torch.Generator(device="cuda").manual_seed(5)
    shapes = [(256, 64), (70_017,), (3,)]
    ours = [torch.nn.Parameter(torch.randn(shape, device="cuda", generator=generator).to(dtype)) for shape in shapes]
    host = [p.detach().cpu() for p in ours]
    optimizer = adamgen.torch.AdamW(ours, lr=1e-2, weight_decay=0.1, state_dtype=state_dtype)
    cpu = adamgen.torch.AdamW([torch.nn.Parameter(h) for h in host], lr=1e-2, weight_decay=0.1,
                              state_dtype=state_dtype)
    for _ in range(5):
        grads = [torch.randn(shape, device="cuda", generator=generator).to(dtype) for shape in shapes]
        for p, q, g in zip(ours, cpu.param_groups[0]["params"], grads):
            p.grad, q.grad = g.clone(), g.cpu()
        optimizer.step()
        cpu.step()
    torch.cuda.synchronize()
    for p, q in zip(ours, cpu.param_groups[0]["params"]):
        assert torch.equal(p.detach().cpu().view(torch.int16 if dtype.itemsize == 2 else torch.int32),
                           q.detach().view(torch.int16 if dtype.itemsize == 2 else torch.int32))
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(optimizer.state[p][name].cpu().view(torch.int16), cpu.state[q][name].view(torch.int16))
    if state_dtype is None:  # torch's fused CUDA AdamW keeps states in the parameter's dtype
        theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
        reference = torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.1, fused=True)
        for p, q in zip(ours, theirs):
            reference.state[q] = {name: value.clone() for name, value in optimizer.state[p].items()}
            reference.state[q]["step"] = optimizer.state[p]["step"].clone().cuda()
        grads = [torch.randn(shape, device="cuda", generator=generator).to(dtype) for shape in shapes]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        optimizer.step()
        reference.step()
        for p, q in zip(ours, theirs):
            bits = [t.detach().view(torch.int16).int() for t in (p, q)]
            ordered = [torch.where(b < 0, -(b & 0x7FFF), b) for b in bits]
            ulps = (ordered[0] - ordered[1]).abs()
            assert int(ulps.max()) <= 2 and int((ulps > 0).sum()) <= max(1, p.numel() // 1000)


# --- the GPU benchmark and the GPU check script --------------------------------------------------------------------


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_cuda", ROOT / "benchmarks" / "bench_cuda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.torch  # the model's shapes come from bench_torch.py, which imports torch
def test_benchmark_imports_without_a_gpu():
    bench = _bench_module()
    shapes = bench.model_shapes()
    assert len(shapes) == 198 and 10_000_000 < sum(int(np.prod(s)) for s in shapes) < 20_000_000
    sizes = bench.small_sizes(np.random.default_rng(0))
    assert len(sizes) == 10_000 and min(sizes) >= 10 and max(sizes) <= 1000


def _timing(*round_medians_us):
    return {"median_us": statistics.median(round_medians_us), "round_medians_us": list(round_medians_us),
            "samples": 5 * len(round_medians_us)}


def test_benchmark_summary_judges_the_targets():
    """The summary of a result file: the figures it holds and, per target, met, NOT met or not measured."""
    bench = _bench_module()
    single = {}
    for k, step in [(24, 100.0), (26, 400.0), (28, 1600.0)]:
        copy = 0.95 * step if k == 26 else 0.85 * step  # 95 % of the copy's bandwidth at 2^26, 85 % at 2^28
        timings = {"adamgen_step": _timing(step), "torch_fused": _timing(step), "copy": _timing(copy)}
        single[str(k)] = {"elements": 1 << k, "timings": timings, "copy_GBps": 1.0, "adamgen_GBps": 1.0,
                          "torch_fused_GBps": 1.0, "torch_fused_share_of_copy": 1.0, "speedup_vs_fused": 1.0,
                          "adamgen_share_of_copy": bench.ratio(timings, "copy", "adamgen_step")}
    results = {"info": {"gpu": "a test GPU"}, "single": single, "errors": {"small": "Traceback\nRuntimeError: boom\n"}}
    assert bench.assess(results) == {"copy_share": False, "model_speedup_vs_fused": None}
    text = "\n".join(bench.summary(results))
    assert "2^26 95.0%, 2^28 85.0% -> NOT met" in text and "198-tensor model: - -> not measured" in text
    assert "small: failed: RuntimeError: boom" in text and "a test GPU" in text
    names = ("adamgen_torch", "adamgen_step_many", "torch_fused", "torch_foreach", "copy")
    rounds = [(900, 1100, 1000), (5000,) * 3, (1000, 1000, 1100), (3000,) * 3, (400,) * 3]
    timings = {name: _timing(*values) for name, values in zip(names, rounds)}
    results["model"] = {"tensors": 198, "elements": 17_600_000, "timings": timings,
                        "speedup": {f"{a}/{b}": bench.ratio(timings, a, b) for a in ("torch_fused", "torch_foreach")
                                    for b in ("adamgen_torch", "adamgen_step_many")}}
    # the median of the rounds' ratios (1000/900, 1000/1100, 1100/1000), not the ratio of the medians (1000/1000)
    assert results["model"]["speedup"]["torch_fused/adamgen_torch"] == pytest.approx(1.1)
    assert bench.assess(results)["model_speedup_vs_fused"] is True
    assert "x1.10 -> met" in "\n".join(bench.summary(results))


@pytest.mark.skipif(GPU, reason="a GPU is present: the benchmark would run")
def test_benchmark_without_a_gpu_says_so(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cuda.py"), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "bench_cuda:" in result.stderr and "GPU" in result.stderr
    assert not out.exists()


def test_gpu_check_script_parses():
    result = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr


# --- background runs: the simulator and the PTX compilation, started early ------------------------------------------


class _Run:
    """A helper script in a subprocess: started once, read when a test first needs its findings (JSON on stdout)."""

    def __init__(self, folder: Path, script: str, arguments=(), **env):
        self.script, self.out, self.err = script, folder / "findings.json", folder / "stderr.txt"
        environment = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "ADAMGEN_SIM_ONLY")}
        environment.update(env)
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([sys.executable, str(HERE / script), *arguments], stdout=out, stderr=err,
                                            env=environment, cwd=ROOT)
        self.findings = None

    def result(self) -> dict:
        if self.findings is None:
            try:
                code = self.process.wait(timeout=BACKGROUND_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.stop()
                pytest.fail(f"{self.script} took more than {BACKGROUND_TIMEOUT} s")
            assert code == 0, self.err.read_text()[-4000:]
            self.findings = json.loads(self.out.read_text())
        return self.findings

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _spare_cores() -> int:
    """Cores for the PTX shards: all but two (the simulator's and this process's), at least one, at most eight."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, min(8, cores - 2))


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda-simulator")
    run = _Run(folder, "cuda_simulator_run.py", NUMBA_ENABLE_CUDASIM="1", ADAMGEN_CACHE_DIR=str(folder / "cache"))
    yield run
    run.stop()


@pytest.fixture(scope="module")
def ptx_runs(tmp_path_factory):
    cache, count = tmp_path_factory.mktemp("cuda-ptx-cache"), _spare_cores()
    runs = [_Run(tmp_path_factory.mktemp(f"cuda-ptx-{k}"), "cuda_ptx_run.py", (str(k), str(count)),
                 ADAMGEN_CACHE_DIR=str(cache)) for k in range(count)]
    yield runs
    for run in runs:
        run.stop()


@pytest.fixture(scope="module", autouse=True)
def _start_background_runs(request):
    """Start the simulator run and the PTX shards with this file's first test when a selected test needs them: they
    take a core each while the tests before theirs run here; their tests come last."""
    needed = set()
    for item in request.session.items:
        if getattr(item, "module", None) is request.module:
            needed |= {"simulation", "ptx_runs"} & set(getattr(item, "fixturenames", ()))
    for fixture in sorted(needed):
        request.getfixturevalue(fixture)


@pytest.fixture(scope="module")
def simulated(simulation):
    """Findings of one simulator run over every built-in and extra variant (see cuda_simulator_run.py)."""
    return simulation.result()


@pytest.fixture(scope="module")
def ptx_scans(ptx_runs):
    """The PTX scan of every kernel (see cuda_ptx_run.py), all shards together."""
    results = [run.result() for run in ptx_runs]
    findings = {}
    for result in results:
        findings.update(result["findings"])
    assert {result["jobs"] for result in results} == {len(findings) // 2}  # 3 + 1 capabilities per float32/64 pair
    return findings


# --- PTX -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ALL)
def test_kernels_take_the_arguments_of_the_printed_phases(modules, key):
    """Both forms of each pass, as `kernel_forms` types them for the PTX scan: the module has exactly these kernels,
    each with these parameters in this order, and each reduce pass (and no other) sums."""
    module, lines = modules[key], _printed(key)
    assert list(lines.arrays) == ["param", "grad", *module.STATES]
    assert [phase.reduces for phase in lines.phases] == [True] * module.REDUCE_PHASES + [False]
    forms = kernel_forms(_variant(key), "float32")
    kernels = _dispatchers(module)
    assert sorted(kernels) == sorted(name for name, _, _ in forms)
    for name, names, types in forms:
        assert list(inspect.signature(kernels[name].py_func).parameters) == names, name
        assert len(types) == len(names)


def _normalized(ptx):
    """PTX without the names numba mangles uniquely per compilation."""
    return re.sub(r"_cudapy_smem_\d+", "SMEM", re.sub(r"_ZN\w+", "NAME", ptx))


def test_ptx_scan_compiles_what_compile_ptx_compiles():
    """The scan types each kernel once and has NVVM compile it per capability: the same instructions as
    numba.cuda.compile_ptx for each capability. Here for a kernel with all the features: a reduce kernel over tables
    (shared memory, syncthreads, arrays at addresses)."""
    module = adamgen.load("lamb", target="cuda")
    [types] = [types for name, _, types in kernel_forms(BUILTINS["lamb"][2], "float32") if name == "_reduce0_tables"]
    function = module._reduce0_tables.py_func
    ptxs, path = ptx_by_capability(function, types, [(7, 5), (9, 0)])
    if path != "front end once":
        pytest.skip("this numba-cuda lacks the internal function of the scan's shortcut: the scan uses compile_ptx")
    for cc, ptx in ptxs.items():
        assert _normalized(ptx) == _normalized(cuda.compile_ptx(function, types, cc=cc)[0]), cc


@reads_background_runs
@pytest.mark.parametrize("cc", COMPUTE_CAPABILITIES, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("key", FLOAT)
def test_float32_ptx_has_no_float64_and_no_local_memory(ptx_scans, key, cc):
    for name, _, _ in kernel_forms(_variant(key), "float32"):
        found = ptx_scans[f"{key}|float32|{name}|sm_{cc[0]}{cc[1]}"]
        assert found["target"] and found["loads"] and found["stores"], (name, found)  # float32 loads, some store
        assert found["problems"] == [], name


@reads_background_runs
@pytest.mark.parametrize("key", FLOAT)
def test_float64_ptx_has_no_local_memory(ptx_scans, key):
    for name, _, _ in kernel_forms(_variant(key), "float64"):
        found = ptx_scans[f"{key}|float64|{name}|sm_80"]
        assert found["target"] and found["loads"] and found["stores"], (name, found)  # float64 loads, some store
        assert found["problems"] == [], name


LOW_PRECISION_FORMS = [(key, storage) for key in LOW_PRECISION if key in ALL
                       for storage in storages(_variant(key)) if storage not in ("float32", "float64")]


@pytest.mark.parametrize("key, storage", LOW_PRECISION_FORMS)
def test_low_precision_ptx_has_no_float64_and_no_local_memory(ptx_scans, key, storage):
    """16-bit storage: the kernels load the parameter's 16-bit (or float32) elements, compute in float32 with no
    float64 instruction (the widening and the rounding are integer arithmetic) and keep everything in registers."""
    for name, _, _ in kernel_forms(_variant(key), storage):
        for cc in ("80", "90"):
            found = ptx_scans[f"{key}|{storage}|{name}|sm_{cc}"]
            assert found["target"] and found["loads"] and found["stores"], (name, cc, found)
            assert found["problems"] == [], (name, cc)


def _promoting_kernel(x, scale):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        x[i] = 0.5 * x[i] + scale  # the literal 0.5 is a float64: the product runs in float64


def _local_array_kernel(x, k):
    scratch = cuda.local.array(64, np.float32)
    for j in range(64):
        scratch[j] = x[j]
    x[0] = scratch[k]  # indexed at run time, so the array lives in .local memory


def test_ptx_scan_catches_bad_kernels():
    from numba import float32, int64

    ptx, _ = cuda.compile_ptx(_promoting_kernel, (float32[::1], float32), cc=(8, 0))
    problems = ptx_problems(ptx)
    assert problems and all(".f64" in line for line in problems)
    assert any(re.search(r"(mul|fma\.rn|cvt\.\w+)\.f64", line) for line in problems)
    ptx, _ = cuda.compile_ptx(_local_array_kernel, (float32[::1], int64), cc=(8, 0))
    assert any(".local" in line for line in ptx_problems(ptx))


# --- the CUDA simulator's findings ---------------------------------------------------------------------------------


def test_simulator_settings_exercise_chunks_blocks_and_step_counts():
    """The simulator run's tensors and launch constants make blocks loop over chunks and mix step counts."""
    sizes = [int(np.prod(shape)) for shape in SHAPES]
    assert 0 in sizes and 1 in sizes and () in SHAPES and SIM_CHUNK in sizes
    assert max(sizes) > 2 * SIM_CHUNK and max(sizes) % SIM_CHUNK  # several chunks, the last one partial
    assert -(-max(sizes) // SIM_CHUNK) > SIM_BLOCKS  # each block of one tensor's launch takes several chunks
    assert SIM_THREADS >= 4 and SIM_THREADS & (SIM_THREADS - 1) == 0  # a tree of two levels or more
    assert len(set(FIRST_STEPS)) > 1 and 0 < max(JOINS) < CALLS


@reads_background_runs
@pytest.mark.parametrize("key", FLOAT)
def test_simulator_matches_float64_oracle(simulated, key):
    """`step` per tensor and `step_many` over all tensors against the float64 oracle, float32 and float64, worst error
    in units of the tolerance; the oracle's values are all finite, so each comparison compares numbers. Then both
    with the module's own launch constants (the simulator device's fallback)."""
    found = simulated["oracle"][key]
    assert sorted(found) == ["float32", "float64"]
    for dtype, worst in found.items():
        assert worst["step"] <= 1 and worst["step_many"] <= 1, (dtype, worst)
        assert worst["nonfinite"] == 0, (dtype, worst)
    assert simulated["default"][key] <= 1


@reads_background_runs
@pytest.mark.parametrize("key", FLOAT)
def test_simulator_step_many_equals_step(simulated, key):
    """Every array, step count and scalar state, reductions included (both add the same per-chunk partial sums in the
    same order): float32 arrays to the bit, step counts equal. float64 values to the bit where NumPy's vectorised
    float64 functions (step_many's host code works on arrays of the tensors' values, step's on scalars) round as the C
    library does; on hosts where they run SIMD code that is only faithfully rounded (NumPy's AVX-512 `power`, `exp`,
    `log`), a host value may differ in its last bit, which the scalar states and the float64 kernels carry: a few
    ulps. (A float32 kernel gets each host value rounded to float32, which a last-bit difference almost never moves.)"""
    found = simulated["many_vs_step"][key]
    if found["float32"]["grouped"]:  # a group sum: step_many is one step of the group, checked against the oracle's
        # (it differs from a step of each tensor in the arrays, or only in the scalar states that the sums feed:
        # prodigy's d stays at d0 over these three calls, its numerator does not)
        different = found["float32"]["differing"] > 0 or found["float32"]["scalar_ulps"] > 16
        assert different and found["float32"]["steps_equal"], found["float32"]
        return
    assert found["float32"]["differing"] == 0, found["float32"]
    assert found["float64"]["ulps"] <= 16, found["float64"]
    for dtype in ("float32", "float64"):  # scalar states are float64 host values in both
        assert found[dtype]["scalar_ulps"] <= 16 and found[dtype]["steps_equal"], (dtype, found[dtype])


@reads_background_runs
@pytest.mark.parametrize("key", FLOAT)
def test_simulator_launches_one_kernel_per_pass(simulated, modules, key):
    """`step` launches each pass's kernel once over the tensor, `step_many` each pass's table kernel once over all
    tensors, on SIM_BLOCKS blocks (fewer than the chunks); nothing launches for empty tensors, and their step counts
    still advance."""
    launches, module = simulated["launches"][key], modules[key]
    kernels = [f"_reduce{k}" for k in range(module.REDUCE_PHASES)] + ["_update"]
    one, every = launches["chunks"]
    assert SIM_BLOCKS < one < every
    single = [f"{name}_tables" for name in kernels] if hasattr(module, "ROW_STATES") else kernels  # factored: tables
    assert launches["step"] == [[name, SIM_BLOCKS, SIM_THREADS] for name in single]
    assert launches["step_many"] == [[f"{name}_tables", SIM_BLOCKS, SIM_THREADS] for name in kernels]
    assert launches["empty"] == []
    empty = [k for k, shape in enumerate(SHAPES) if not np.prod(shape)]
    expected = [1] * len(SHAPES)  # one step_many over all
    expected[0] += 1  # and a step of the largest
    for k in empty:
        expected[k] += 2  # a step and a step_many of the empty ones
    assert launches["steps after"] == expected


@reads_background_runs
@pytest.mark.parametrize("key", SIMULATED_LOW_PRECISION)
def test_simulator_16_bit_storage_matches_the_cpu_kernels(simulated, key):
    """bfloat16, float16, and float32 parameters with bfloat16 states: the CUDA kernels (their Python form, the
    storage conversions included) leave every array equal to the CPU kernels' to the bit on the same 16-bit inputs;
    a reduction variant within 1 ulp (its sums are added in another order), or 4 float32 ulps of the values that
    master weights hold (float32 values: a trust ratio 1 ulp apart moves them by an ulp or two per step). Measured:
    lamb, 3 float32 elements 1 ulp apart with bfloat16 states; lamb_master_weights, 15 elements up to 2 ulps apart
    after 4 steps; everything else to the bit (adamw_master_weights included)."""
    found = simulated["low_precision"][key]
    master = bool(remainders(_variant(key)))
    assert sorted(found) == (["bfloat16"] if master else ["bfloat16", "float16", "float32+bfloat16"])
    for storage, result in found.items():
        assert result["dtypes"], storage
        if len(_printed(key).phases) > 1:  # reduce passes before the update
            assert result["ulps"] <= (4 if master else 1), (storage, result)
        else:
            assert result["differing"] == 0, (storage, result)


@reads_background_runs
@pytest.mark.parametrize("key", FLOAT)
def test_simulator_init_many(simulated, key):
    """One fresh state per tensor (own arrays shaped and typed like it, initial values, step 0, scalar states);
    `init_many([])` is []."""
    assert simulated["init_many"][key] == [2, True, True]


# Bad input -> (exception types, patterns its message must match); {v} is the variant, {first}/{last} its first and last
# state arrays, {scalar} its first scalar state. Each must raise before anything is written.
BETAS = r"unknown hyperparameter\(s\) betas; {v} takes lr.*(betas are given one by one as beta1|no beta)"
ERRORS = {
    "step: host param": ("TypeError", [r"^{v}\.step: param must be a CUDA array", r"target='cpu'"]),
    "step: host grad": ("TypeError", [r"step: grad must be a CUDA array"]),
    "step: host state": ("TypeError", [r"step: state\['{last}'\] must be a CUDA array"]),
    "step: int32": ("TypeError", [r"param must be float64, float32, float16 or bfloat16, got int32"]),
    "step: grad dtype": ("TypeError", [r"grad is float64, param is float32"]),
    "step: state dtype": ("TypeError", [r"state\['{first}'\] is float64; with a float32 parameter, states are "
                                        r"float32, float16 or bfloat16"]),
    "step: grad shape": ("ValueError", [r"grad has shape \(5, 4\), param has shape \(4, 5\)"]),
    "step: state shape": ("ValueError", [r"state\['{last}'\] has shape \(20,\)"]),
    "step: strided grad": ("ValueError", [r"grad must be C-contiguous"]),
    "step: read-only param": ("ValueError", [r"param is read-only"]),
    "step: state overlaps param": ("ValueError", [r"state\['{last}'\] overlaps param in memory"]),
    "step: grad is a state": ("ValueError", [r"state\['{first}'\] overlaps grad in memory"]),
    "step: missing state": ("ValueError", [r"state lacks {first}; create it with {v}\.init"]),
    "step: state not a dict": ("TypeError", [r"state must be the dict that init returns, got list"]),
    "step: bad step count": ("TypeError", [r"state\['step'\] must be a non-negative int .*got -1"]),
    "step: stream": ("TypeError", [r"step: stream must be .*got str"]),
    "step: unknown hyperparameter": ("TypeError", [r"unknown hyperparameter\(s\) learning_rate; {v} takes lr"]),
    "step: betas": ("TypeError", [BETAS]),
    "step: hyperparameter value": ("TypeError", [r"hyperparameter lr must be a number, got '0.1'"]),
    "step: bad scalar state": ("TypeError", [r"state\['{scalar}'\] must be a number"]),
    "step_many: host param": ("TypeError", [r"^{v}\.step_many: params\[1\] must be a CUDA array", r"target='cpu'"]),
    "step_many: host grad": ("TypeError", [r"step_many: grads\[2\] must be a CUDA array"]),
    "step_many: float64 tensor among float32": ("TypeError", [r"params\[1\]'s arrays are float64, .*params\[0\]'s "
                                                              r"are float32, .*one call takes one combination"]),
    "step_many: grad dtype": ("TypeError", [r"grads\[2\] is float64, params\[2\] is float32"]),
    "step_many: grad shape": ("ValueError", [r"grads\[1\] has shape \(8,\), params\[1\] has shape \(7,\)"]),
    "step_many: strided grad": ("ValueError", [r"grads\[2\] must be C-contiguous"]),
    "step_many: read-only state": ("ValueError", [r"states\[1\]\['{last}'\] is read-only"]),
    "step_many: params overlap": ("ValueError", [r"params\[4\] overlaps params\[3\] in memory"]),
    "step_many: tensor listed twice": ("ValueError", [r"s\[3\](\['\w+'\])? overlaps \w+s\[1\](\['\w+'\])? in memory"]),
    "step_many: state shared by two tensors": ("ValueError", [r"states\[2\]\['{first}'\] overlaps "
                                                              r"states\[0\]\['{first}'\] in memory"]),
    "step_many: grad is another tensor's param": ("ValueError", [r"grads\[2\] overlaps params\[0\] in memory"]),
    "step_many: length mismatch": ("ValueError", [r"step_many: 3 params, 2 grads and 3 states"]),
    "step_many: missing state": ("ValueError", [r"states\[1\] lacks {last}; create it with {v}\.init"]),
    # The old calling convention, one state for all tensors: not a list of states
    "step_many: one state for all": (("TypeError", "ValueError"), [r"states\[0\] must be the dict that init returns, "
                                                                   r"got str|3 params, 3 grads and \d+ states"]),
    "step_many: bad step count": ("TypeError", [r"states\[2\]\['step'\] must be a non-negative int .*got 1\.5"]),
    "step_many: stream": ("TypeError", [r"step_many: stream must be .*got float"]),
    "step_many: unknown hyperparameter": ("TypeError", [BETAS]),
    "step_many: hyperparameter value": ("TypeError", [r"hyperparameter lr must be a number, got None"]),
    "step_many: bad scalar state": ("TypeError", [r"states\[1\]\['{scalar}'\] must be a number"]),
}
# Row and column states (factored variants): float64 NumPy arrays on the host, of the parameter's row (column) shape.
VECTOR_ERRORS = {
    "step: row or column state shape": ("ValueError", [r"state\['{vector}'\] has shape \(3,\); a parameter of shape "
                                                       r"\(4, 5\)"]),
    "step: row or column state on the device": ("TypeError", [r"state\['{vector}'\] must be a numpy float64 array"]),
    "step: row or column state dtype": ("TypeError", [r"state\['{last_vector}'\] must be a numpy float64 array"]),
    "step: missing row or column state": ("ValueError", [r"state\['{last_vector}'\] is missing"]),
}
VALID = {"step: valid": True, "step_many: valid, no tensors": False, "step_many: valid, shared gradient": True}


@reads_background_runs
@pytest.mark.parametrize("key", FLOAT)
def test_simulator_bad_input_writes_nothing(simulated, modules, key):
    findings, module = simulated["errors"][key], modules[key]
    expected = {check: rule for check, rule in ERRORS.items() if "scalar state" not in check or module.SCALAR_STATES}
    if not module.STATES:  # no state array to break (adafactor's states are all row and column states)
        expected = {check: (kinds, patterns) for check, (kinds, patterns) in expected.items()
                    if not any("{first}" in p or "{last}" in p for p in patterns)}
    vectors = (*getattr(module, "ROW_STATES", ()), *getattr(module, "COL_STATES", ()))
    if vectors:
        expected.update(VECTOR_ERRORS)
    assert set(findings) == set(expected) | set(VALID)
    words = {"v": module.VARIANT, "first": (module.STATES or ("",))[0], "last": (module.STATES or ("",))[-1],
             "scalar": next(iter(module.SCALAR_STATES), ""), "vector": (vectors or ("",))[0],
             "last_vector": (vectors or ("",))[-1]}
    for check, (kinds, patterns) in expected.items():
        raised, message, changed = findings[check]
        assert raised in ((kinds,) if isinstance(kinds, str) else kinds), (check, raised, message)
        for pattern in patterns:
            assert re.search(pattern.format(**words), message), (check, message)
        assert not changed, check
    for check, writes in VALID.items():  # the same arrays are accepted: the checks above are the only failures
        assert findings[check] == [None, "", writes], check
