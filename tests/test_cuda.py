"""The CUDA target: generated modules, their kernels under the simulator, their PTX, and real GPUs when present.

Without a GPU (this file's normal case on a developer machine and in CI):
  - every generated cuda module is fresh, self-contained, imports without a GPU, compiles nothing at import, and carries
    the same metadata as its cpu twin; host arrays are refused with a TypeError naming the cpu target;
  - every kernel runs under numba's CUDA simulator against the float64 oracle (one subprocess for all of them, see
    ``cuda_simulator_run.py``), along with the input checks and ``step_many``;
  - every kernel is compiled to PTX for compute capability 7.5, 8.0 and 9.0 and scanned: a float32 kernel has no ``.f64``
    instruction and no ``.local`` memory (the simulator uses Python scalars, so only the PTX shows float64 promotion).
The kernels are those of every built-in variant and option set, plus the variants with per-tensor reductions of
``cuda_reduction_specs.py`` (reduce kernels), generated into a temporary cache.
With a GPU, the tests at the end compare with the CPU kernels and with torch.optim on CUDA tensors, and check streams,
numba device arrays and ``step_many`` on torch views.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import adamgen
from adamgen.generate import check_builtins
from adamgen.lower import lower
from adamgen.printing import print_lowered
from adamgen.transforms import maximize
from adamgen.variants import builtin_variants

try:
    from .cuda_reduction_specs import reduction_variants
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from cuda_reduction_specs import reduction_variants
try:  # the table of torch.optim references, used by the GPU parity test
    from . import cases
except ImportError:
    try:
        import cases
    except ImportError:
        cases = None

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed (pip install -e '.[cuda]')")

HERE = Path(__file__).resolve().parent
COMPUTE_CAPABILITIES = [(7, 5), (8, 0), (9, 0)]
GPU = cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="no CUDA GPU on this machine (numba.cuda.is_available() is False)")


BUILTINS = {variant.name: (name, options, variant) for name, options, variant in builtin_variants()}
EXTRA = {variant.name: variant for variant in reduction_variants()}
ALL = list(BUILTINS) + list(EXTRA)


def _module(case):
    return adamgen.load(case.name, target="cuda", **case.options)


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


# --- generated modules ---------------------------------------------------------------------------------------------


def test_generated_cuda_modules_are_fresh():
    assert check_builtins(targets=("cuda",)) == []


@pytest.mark.parametrize("key", list(BUILTINS))
def test_module_interface(key):
    name, options, _ = BUILTINS[key]
    module, twin = adamgen.load(name, target="cuda", **options), adamgen.load(name, target="cpu", **options)
    assert module.__name__ == f"adamgen.generated.cuda.{key}"
    assert module.TARGET == "cuda" and twin.TARGET == "cpu"
    for name in ("VARIANT", "STATES", "SCALAR_STATES", "HYPERPARAMETERS", "REFERENCE", "SPEC_HASH"):
        assert getattr(module, name) == getattr(twin, name), name
    step = inspect.signature(module.step).parameters
    assert list(step) == list(inspect.signature(twin.step).parameters) + ["stream"]
    assert {name: p.default for name, p in step.items() if p.kind is p.KEYWORD_ONLY} == {**module.HYPERPARAMETERS,
                                                                                          "stream": None}
    for function in ("init", "step", "init_many", "step_many"):
        assert callable(getattr(module, function))
    # Kernels compile on first launch: importing compiled nothing, so a machine without a GPU can import the module.
    assert module._update.overloads == {}
    assert all(getattr(module, f"_reduce{k}").overloads == {} for k in range(module.REDUCE_PHASES))


def test_modules_import_only_math_sys_numpy_numba():
    """Read by `ast`, and imported by path in a fresh interpreter: neither adamgen nor torch is loaded."""
    files = sorted((HERE.parent / "generated" / "cuda").glob("*.py"))
    assert len(files) == len(BUILTINS) + 1
    for path in files:
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        assert imported <= {"math", "sys", "numpy", "numba"}, (path.name, imported)
    script = (
        "import importlib.util, sys\n"
        f"for path in {[str(p) for p in files if p.name != '__init__.py']!r}:\n"
        "    spec = importlib.util.spec_from_file_location('m_' + path.rsplit('/', 1)[1][:-3], path)\n"
        "    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "    assert module._update.overloads == {}\n"
        "print(sorted(m for m in ('adamgen', 'torch', 'sympy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_host_arrays_are_refused_before_anything_is_written():
    module = adamgen.load("adam", target="cuda")
    param, grad = np.ones(8, np.float32), np.ones(8, np.float32)
    with pytest.raises(TypeError, match=r"param must be a CUDA array.*target='cpu'"):
        module.init(param)
    state = {"step": 0, "exp_avg": np.zeros(8, np.float32), "exp_avg_sq": np.zeros(8, np.float32)}
    with pytest.raises(TypeError, match=r"adam: param must be a CUDA array.*got ndarray"):
        module.step(param, grad, state, lr=0.1)
    assert state["step"] == 0 and (param == 1).all() and not state["exp_avg"].any()
    with pytest.raises(TypeError, match=r"params\[0\] must be a CUDA array"):
        module.init_many([param])
    with pytest.raises(ValueError, match="params is empty"):
        module.step_many([], [], state)


def test_cpu_torch_tensors_are_refused():
    torch = pytest.importorskip("torch")
    module = adamgen.load("adamw", target="cuda")
    param = torch.ones(8, requires_grad=True)
    with pytest.raises(TypeError, match="param must be a CUDA array.*got Tensor"):
        module.init(param)
    with pytest.raises(TypeError, match="param must be a CUDA array"):
        module.step(param, torch.ones(8), {"step": 0, "exp_avg": torch.zeros(8), "exp_avg_sq": torch.zeros(8)})
    with pytest.raises(TypeError, match=r"params\[0\] must be a CUDA array"):
        module.step_many([param], [torch.ones(8)], {})


def test_user_spec_gets_a_cuda_module(spec_file, cache):
    module = adamgen.load(spec_file, target="cuda")
    assert module.TARGET == "cuda" and module.VARIANT == "laggy_adam"
    assert "adamgen generate laggy_adam.py --target cuda" in Path(module.__file__).read_text()


# --- the CUDA simulator --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Findings of one simulator run over every built-in and extra variant (see cuda_simulator_run.py)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", ADAMGEN_CACHE_DIR=str(tmp_path_factory.mktemp("sim-cache")))
    result = subprocess.run([sys.executable, str(HERE / "cuda_simulator_run.py")], capture_output=True, text=True,
                            env=env, timeout=300, cwd=HERE.parent)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("key", ALL)
def test_simulator_matches_float64_oracle(simulated, key):
    """float32 and float64 arrays of 300 elements (8 steps), 1 and 0 elements (2 steps) on a grid of 4 blocks of 8
    threads; worst error in units of the tolerance. Then the module's own launch configuration (the simulator's
    fallback device figures)."""
    worst = simulated["oracle"][key]
    assert worst["float64"] <= 1 and worst["float32"] <= 1, worst
    assert simulated["launch"][key] <= 1


CHECKS = {  # bad input -> (exception, words its message must contain)
    "host param": ("TypeError", ["param must be a CUDA array", "cpu target"]),
    "host grad": ("TypeError", ["grad must be a CUDA array"]),
    "float16": ("TypeError", ["float32 or float64", "float16"]),
    "grad dtype": ("TypeError", ["grad has dtype float64"]),
    "state dtype": ("TypeError", ["has dtype float64"]),
    "grad shape": ("ValueError", ["grad has shape (20, 15)", "(15, 20)"]),
    "strided grad": ("ValueError", ["grad must be C-contiguous"]),
    "overlap": ("ValueError", ["overlaps param"]),
    "missing state": ("ValueError", ["state lacks"]),
    "stream": ("TypeError", ["stream must be"]),
    "unknown hyperparameter": ("TypeError", ["learning_rate"]),
}


@pytest.mark.parametrize("key", ALL)
def test_simulator_bad_input_writes_nothing(simulated, key):
    findings = simulated["errors"][key]
    assert findings["valid"][0] is None, findings["valid"]  # the arrays themselves are fine
    for check, (kind, words) in CHECKS.items():
        raised, message, changed = findings[check]
        assert raised == kind, (check, raised, message)
        assert all(word in message for word in words), (check, message)
        assert not changed, check


@pytest.mark.parametrize("key", ALL)
def test_simulator_step_many(simulated, modules, key):
    """One launch over views of flat buffers equals `step` per tensor; a broken layout is refused untouched. A variant
    that reads whole tensors (a reduction, the element count) refuses step_many and init_many."""
    findings = simulated["step_many"][key]
    module = modules[key]
    assert module.ELEMENTWISE == (module.REDUCE_PHASES == 0 and "numel" not in module.step.__code__.co_varnames)
    if not module.ELEMENTWISE:
        for check in ("init_many", "step_many"):
            raised, message, changed = findings[check]
            assert raised == "TypeError" and "reads whole tensors" in message and not changed
        return
    assert findings["matches step"] <= 1
    for check, kind in [("reordered", "ValueError"), ("separate allocations", "ValueError"),
                        ("mixed dtypes", "TypeError"), ("length mismatch", "ValueError")]:
        raised, message, changed = findings[check]
        assert raised == kind, (check, message)
        assert not changed, check
    assert "end to end" in findings["separate allocations"][1]


# --- PTX -----------------------------------------------------------------------------------------------------------


def ptx_problems(ptx: str, float32: bool = True) -> list[str]:
    """Lines of a kernel's PTX that betray a slow kernel: `.local` memory (spills, local arrays) always, and any `.f64`
    register or instruction in a float32 kernel."""
    pattern = r"\.local\b|\.f64\b" if float32 else r"\.local\b"
    return [line.strip() for line in ptx.splitlines() if re.search(pattern, line)]


def _kernels(module, key, dtype):
    """(kernel, argument names, argument types) of each kernel of a module, from the lowering: arrays (and a reduce
    kernel's 2-D `partials`), then float scalars or boolean flags, in order."""
    from numba import boolean, float32, float64

    printed = print_lowered(lower(maximize(_variant(key))))
    scalar = {"float32": float32, "float64": float64}[dtype]
    arrays = list(printed.arrays)

    def signature(extra_names, extra_types, scalars):
        names = arrays + extra_names + [name for name, _ in scalars]
        types = [scalar[::1]] * len(arrays) + extra_types + [boolean if flag else scalar for _, flag in scalars]
        return names, tuple(types)

    kernels = [(getattr(module, f"_reduce{k}"), *signature(["partials"], [scalar[:, ::1]], phase.scalars))
               for k, phase in enumerate(printed.reductions)]
    assert len(kernels) == module.REDUCE_PHASES
    return kernels + [(module._update, *signature([], [], printed.scalars))]


@pytest.mark.parametrize("cc", COMPUTE_CAPABILITIES, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("key", ALL)
def test_float32_ptx_has_no_float64_and_no_local_memory(modules, key, cc):
    for kernel, names, signature in _kernels(modules[key], key, "float32"):
        assert list(inspect.signature(kernel.py_func).parameters) == names
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx
        assert re.search(r"ld\.global(\.\w+)*\.f32", ptx), kernel.py_func.__name__
        assert ptx_problems(ptx) == [], kernel.py_func.__name__


@pytest.mark.parametrize("key", ALL)
def test_float64_ptx_has_no_local_memory(modules, key):
    for kernel, _, signature in _kernels(modules[key], key, "float64"):
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(8, 0))
        assert ".f64" in ptx and ptx_problems(ptx, float32=False) == [], kernel.py_func.__name__


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


# --- a real GPU ----------------------------------------------------------------------------------------------------


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here (a CPU build of torch, or no GPU)")
    return torch


def _rng(*parts):
    import zlib

    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("key", ALL)
def test_gpu_matches_cpu_kernel_on_numba_device_arrays(modules, cpu_modules, key, dtype):
    """Same starting values, same gradients, 20 steps: the GPU kernels against the CPU kernels. The GPU contracts
    multiply-adds into FMAs and sums reductions in another order, so results differ in the last bits; where a rule
    branches on a value that is zero to within those bits (Lion's sign, a maximum of two near-equal values) an element
    may take the other branch, so a handful of elements in 10^5 may differ by more than the tolerance."""
    module, twin = modules[key], cpu_modules[key]
    rng = _rng("gpu-cpu", key, dtype)
    hyperparameters = dict(module.HYPERPARAMETERS, maximize=True)
    if "weight_decay" in hyperparameters:
        hyperparameters["weight_decay"] = 0.05
    for shape in [(1,), (0,), (33, 65), (70_017,)]:
        host = rng.standard_normal(shape).astype(dtype)
        param, expected = cuda.to_device(host), host.copy()
        state, expected_state = module.init(param), twin.init(expected)
        for _ in range(20):
            grad = rng.standard_normal(shape).astype(dtype)
            module.step(param, cuda.to_device(grad), state, **hyperparameters)
            twin.step(expected, grad, expected_state, **hyperparameters)
        tolerance = (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-14)
        _assert_close_but_for_ties(param.copy_to_host(), expected, tolerance, f"{key} param {shape}")
        for name in module.STATES:
            _assert_close_but_for_ties(state[name].copy_to_host(), expected_state[name], tolerance,
                                       f"{key} {name} {shape}")
        assert state["step"] == expected_state["step"] == 20


def _assert_close_but_for_ties(actual, expected, tolerance, what):
    rtol, atol = tolerance
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    outside = ~np.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    assert outside.sum() <= actual.size // 20_000, (what, int(outside.sum()), actual[outside][:5], expected[outside][:5])


@needs_gpu
@pytest.mark.parametrize("case", cases.CASES if cases else [], ids=cases.CASE_IDS if cases else [])
def test_gpu_matches_torch_optim_on_cuda_tensors(case):
    """The independent reference: torch.optim on CUDA parameters that require grad, 50 steps, float32."""
    torch = _torch_cuda()
    module = _module(case)
    rng = _rng("gpu-torch", case.id)
    hyperparameters = case.sample(rng, weight_decay=True, maximize=False)
    start = torch.tensor(rng.standard_normal((64, 129)).astype(np.float32), device="cuda")
    ours = torch.nn.Parameter(start.clone())
    theirs = torch.nn.Parameter(start.clone())
    optimizer = getattr(torch.optim, case.torch_optimizer)([theirs], **case.torch_kwargs(hyperparameters))
    state = module.init(ours)
    assert all(state[name].is_cuda and not state[name].requires_grad for name in module.STATES)
    for _ in range(50):
        grad = torch.randn_like(start)
        module.step(ours, grad, state, **hyperparameters)
        theirs.grad = grad.clone()
        optimizer.step()
    tolerance = case.tolerance["float32"]
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=tolerance.rtol, atol=tolerance.atol)
    for name, torch_name in case.states.items():
        torch.testing.assert_close(state[name], optimizer.state[theirs][torch_name], rtol=tolerance.rtol,
                                   atol=tolerance.atol)


@needs_gpu
def test_gpu_launches_on_torch_current_stream_and_explicit_streams():
    torch = _torch_cuda()
    module = adamgen.load("adamw", target="cuda")
    start = torch.randn(1 << 20, device="cuda")
    grads = [torch.randn_like(start) for _ in range(3)]

    reference, reference_state = start.clone(), module.init(start)
    for grad in grads:
        module.step(reference, grad, reference_state, lr=1e-2)
    torch.cuda.synchronize()

    side = torch.cuda.Stream()
    param, state = start.clone(), module.init(start)
    torch.cuda.synchronize()
    with torch.cuda.stream(side):  # launched on `side`, in order with torch's own work there
        for grad in grads:
            module.step(param, grad, state, lr=1e-2)
        after = param * 1  # queued on `side` behind the kernels
    side.synchronize()
    torch.testing.assert_close(after, reference, rtol=0, atol=0)

    for stream in (torch.cuda.Stream(), cuda.stream()):  # explicit: a torch stream (__cuda_stream__), a numba stream
        param, state = start.clone(), module.init(start)
        torch.cuda.synchronize()
        for grad in grads:
            module.step(param, grad, state, lr=1e-2, stream=stream)
        stream.synchronize()
        torch.testing.assert_close(param, reference, rtol=0, atol=0)


@needs_gpu
def test_gpu_numba_device_arrays_and_explicit_stream():
    module = adamgen.load("adam", target="cuda")
    host = np.linspace(-1, 1, 5000, dtype=np.float32)
    twin = adamgen.load("adam", target="cpu")
    expected, expected_state = host.copy(), twin.init(host)
    stream = cuda.stream()
    param = cuda.to_device(host, stream=stream)
    state = module.init(param)
    for k in range(5):
        grad = np.full_like(host, 0.1 * (k + 1))
        module.step(param, cuda.to_device(grad, stream=stream), state, stream=stream)
        twin.step(expected, grad, expected_state)
    np.testing.assert_allclose(param.copy_to_host(stream=stream), expected, rtol=1e-5, atol=1e-6)


@needs_gpu
def test_gpu_step_many_on_views_of_flat_tensors_is_one_launch():
    torch = _torch_cuda()
    module = adamgen.load("adamw", target="cuda")
    shapes = [(256, 128), (128,), (0,), (64, 3, 3), (1000,)]
    sizes = [int(np.prod(shape)) for shape in shapes]
    flat_param, flat_grad = torch.randn(sum(sizes), device="cuda"), torch.randn(sum(sizes), device="cuda")
    params = [v.view(shape) for v, shape in zip(flat_param.split(sizes), shapes)]
    grads = [v.view(shape) for v, shape in zip(flat_grad.split(sizes), shapes)]
    singles = [p.clone() for p in params]
    single_states = [module.init(p) for p in singles]
    state = module.init_many(params)

    launches = []
    original = module._update
    module._update = _CountingLaunches(original, launches)
    try:
        module.step_many(params, grads, state, lr=1e-2, weight_decay=0.1)
    finally:
        module._update = original
    assert len(launches) == 1
    for p, g, s in zip(singles, grads, single_states):
        module.step(p, g, s, lr=1e-2, weight_decay=0.1)
    for p, single in zip(params, singles):
        torch.testing.assert_close(p, single, rtol=0, atol=0)
    with pytest.raises(ValueError, match="end to end"):
        module.step_many([p.clone() for p in params], grads, state)
    with pytest.raises(ValueError, match="end to end"):
        module.step_many(params[::-1], grads[::-1], state)


class _CountingLaunches:
    def __init__(self, kernel, launches):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, config):
        self.launches.append(config)
        return self.kernel[config]


# --- the GPU benchmark ---------------------------------------------------------------------------------------------


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_cuda", HERE.parent / "benchmarks" / "bench_cuda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_imports_without_a_gpu():
    bench = _bench_module()
    shapes = bench.transformer_shapes()
    assert len(shapes) == 200 and 10_000_000 < sum(int(np.prod(s)) for s in shapes) < 20_000_000


@pytest.mark.skipif(GPU, reason="a GPU is present: the benchmark would run")
def test_benchmark_without_a_gpu_says_so():
    result = subprocess.run([sys.executable, str(HERE.parent / "benchmarks" / "bench_cuda.py"), "--out", os.devnull],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "bench_cuda:" in result.stderr and "GPU" in result.stderr
