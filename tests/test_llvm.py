"""No float64 operation in any float32 CPU kernel: the LLVM IR of every kernel is scanned.

Numba promotes silently: a literal (``1 - x``, ``2*x``, ``x**0.5``) or a Python-float argument turns float32 arithmetic
into float64 with ``fpext``/``fptrunc`` around it, which is slower and no longer float32 semantics. The generated
modules avoid that by passing every number in as a typed scalar; this test holds them to it.

``inspect_llvm()`` on a dispatcher loaded from numba's disk cache returns junk (TOOLCHAIN.md), so each kernel is
recompiled here from its ``py_func`` with the same options, swapped into the module, and driven through the module's
own ``step`` and ``step_many`` (so the kernels see exactly the argument types those pass), below and above the parallel
threshold: the one-tensor kernels and the table kernels, serial and parallel.
"""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import adamgen
import problems
from adamgen.variants import builtin_variants

pytestmark = pytest.mark.slow

# LLVM IR that computes in float64: the type itself (scalars and vectors `<8 x double>`), conversions to and from it,
# and float64 intrinsics (`llvm.sqrt.f64`, `llvm.fma.f64`).
FLOAT64 = re.compile(r"\bdouble\b|\bfpext\b|\bfptrunc\b|\.f64\b")
FUNCTION = re.compile(r"^define\b.*?^\}", re.M | re.S)
FUNCTION_NAME = re.compile(r'@"?([^\s("]+)')
# numba's CPython wrapper unboxes Python floats with PyFloat_AsDouble and truncates them: float64 by design, once per
# call, outside the loop. Everything else (the kernel, the parfor gufunc, the C wrapper) is scanned.
CPYTHON_WRAPPER = "_ZN7cpython"

BUILTINS_ = builtin_variants()


def float64_operations(llvm: str) -> list[str]:
    """The lines of LLVM IR that operate on float64, outside numba's CPython argument wrapper."""
    found = []
    for function in FUNCTION.finditer(llvm):
        text = function.group(0)
        name = FUNCTION_NAME.search(text.split("\n", 1)[0]).group(1)
        if name.startswith(CPYTHON_WRAPPER):
            continue
        found += [f"{name[:50]}...: {line.strip()}" for line in text.splitlines() if FLOAT64.search(line)]
    return found


def fresh_copy(dispatcher: CPUDispatcher) -> CPUDispatcher:
    """A new dispatcher for the same Python function with the same options (parallel, error_model, fastmath ...), never
    loaded from numba's cache."""
    options = {key: value for key, value in dispatcher.targetoptions.items() if key != "nopython"}  # implied by njit
    return numba.njit(**options)(dispatcher.py_func)


def kernels(module) -> dict:
    """The module's kernels; helpers inlined into them (``_atan2f``) are scanned as part of their callers' IR."""
    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, CPUDispatcher) and obj.targetoptions.get("inline") != "always"}


def scan_module(module, monkeypatch, every_form: bool = True) -> dict:
    """Swap fresh copies of the kernels into ``module``, run float32 steps that reach each of them, return
    kernel name -> (signatures, float64 lines). Without ``every_form``, only the parallel table kernels: every pass's
    element code, in the kernels that ``step_many`` and adamgen.torch run (the other forms wrap the same element code
    in another loop; ``every_form`` scans them too)."""
    fresh = {name: fresh_copy(kernel) for name, kernel in kernels(module).items()
             if every_form or name.endswith("_tables_parallel")}
    assert fresh, f"{module.__name__} has no numba kernel"
    for name, kernel in fresh.items():
        monkeypatch.setattr(module, name, kernel)
    rng = np.random.default_rng(0)
    for size in (100, problems.PARALLEL_SIZE) if every_form else (problems.PARALLEL_SIZE,):  # below and above it
        assert (size >= module.PARALLEL_THRESHOLD) == (size == problems.PARALLEL_SIZE)
        param = rng.standard_normal(size).astype(np.float32)
        state = module.init(param)
        for _ in range(2 if every_form else 0):
            module.step(param, rng.standard_normal(size).astype(np.float32), state)
        params = [rng.standard_normal(n).astype(np.float32) for n in (size, 7)]
        states = module.init_many(params)
        for _ in range(2):
            module.step_many(params, [rng.standard_normal(p.size).astype(np.float32) for p in params], states)
    return {name: (kernel.signatures, [line for llvm in kernel.inspect_llvm().values()
                                       for line in float64_operations(llvm)])
            for name, kernel in fresh.items()}


def _check(result: dict) -> None:
    for name, (signatures, lines) in result.items():
        assert len(signatures) == 1, f"{name} compiled for {signatures}: expected one float32 signature"
        tables = 2 if "_tables_" in name else 0  # the address and chunk tables
        for k, argument in enumerate(signatures[0]):
            base = getattr(argument, "dtype", argument)  # arrays: their element type
            allowed = (numba.int64,) if k < tables else (numba.float32, numba.boolean)
            assert base in allowed, f"{name} got a {argument} argument: {signatures[0]}"
        assert not lines, f"{name} computes in float64:\n" + "\n".join(lines[:20])


EVERY_FORM = {"adamw", "clamb", "adam_atan2"}  # every kernel form: no and two reduce phases, atan2


@pytest.mark.parametrize("name, options", [(n, o) for n, o, _ in BUILTINS_], ids=[v.name for _, _, v in BUILTINS_])
def test_builtin_float32_kernels_have_no_float64(name, options, monkeypatch):
    module = adamgen.load(name, **options)
    result = scan_module(module, monkeypatch, every_form=module.VARIANT in EVERY_FORM)
    assert len(result) == (4 if module.VARIANT in EVERY_FORM else 1) * (1 + module.REDUCE_PHASES), sorted(result)
    _check(result)


def _every_element_form():
    """A user spec that uses every form the element printer has: powers (small, large, fractional), sign, Abs, Max,
    exp, log, atan2, Piecewise on an element condition, and a reduction."""
    from adamgen.spec import Abs, Max, Piecewise, Spec, atan2, exp, grad, log, param, sign, sqrt

    spec = Spec("every_element_form")
    lr, a = spec.hyperparameters(lr=1e-3, a=0.5)
    m = spec.state("m")
    size = spec.norm("size", grad)
    new_m = spec.update(m, Max(a * m, Abs(grad)) + exp(-grad**2) + log(1 + grad**2) + atan2(grad, m + 1)
                        + sign(grad) * grad**10 + Abs(grad)**a + grad / size)
    spec.update(param, Piecewise((param - lr * new_m, grad > 0), (param + lr * sqrt(Abs(new_m)), True)))
    return spec


def test_every_element_form_stays_float32(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAMGEN_CACHE_DIR", str(tmp_path))
    result = scan_module(adamgen.load(_every_element_form()), monkeypatch)
    assert any(name.startswith("_reduce") for name in result), sorted(result)  # the reduce kernels were scanned too
    _check(result)


# --- the scanner itself: it must see what it is meant to see ---

def _literal_one_minus(x, y, a):
    for i in numba.prange(x.shape[0]):
        x[i] = a * (1.0 - y[i])      # 1.0 is a float64 literal: promotes the float32 y[i]


def _integer_times(x, y, a):
    for i in numba.prange(x.shape[0]):
        x[i] = 2 * y[i] * a          # int * float32 is float64 in numba


def _float_power(x, y, a):
    for i in numba.prange(x.shape[0]):
        x[i] = y[i] ** 0.5 + a       # a float exponent: float64 pow


def _typed_only(x, y, a):
    for i in numba.prange(x.shape[0]):
        x[i] = a * y[i] * y[i] + a   # typed arguments only: stays float32


def _compile_and_scan(function, parallel):
    kernel = numba.njit(parallel=parallel, error_model="numpy")(function)
    x = np.ones(64, np.float32)
    kernel(x, x.copy(), np.float32(0.5))
    (llvm,) = kernel.inspect_llvm().values()
    return float64_operations(llvm)


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("function", [_literal_one_minus, _integer_times, _float_power], ids=lambda f: f.__name__[1:])
def test_scanner_detects_float64_promotion(function, parallel):
    assert _compile_and_scan(function, parallel), f"{function.__name__}: float64 promotion not detected"


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
def test_scanner_passes_a_float32_kernel(parallel):
    assert _compile_and_scan(_typed_only, parallel) == []


def test_scanner_ignores_only_the_cpython_wrapper():
    """The wrapper of the clean kernel does convert Python floats (so skipping it is needed), and nothing else is
    skipped: a float64 line in any other function is reported."""
    kernel = numba.njit(error_model="numpy")(_typed_only)
    x = np.ones(8, np.float32)
    kernel(x, x.copy(), np.float32(0.5))
    (llvm,) = kernel.inspect_llvm().values()
    wrappers = [m.group(0) for m in FUNCTION.finditer(llvm) if CPYTHON_WRAPPER in m.group(0).split("\n", 1)[0]]
    assert wrappers and any(FLOAT64.search(w) for w in wrappers)
    renamed = llvm.replace(CPYTHON_WRAPPER, "_ZN7renamed")
    assert float64_operations(renamed)
