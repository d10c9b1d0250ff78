"""The shipped generated/ folder: fresh, self-contained, reproducible, and carrying the right metadata.

The committed ``generated/`` is the golden output: regenerating in memory must give the same bytes. Each CPU module must
work on its own, copied out of the package into a process where adamgen cannot be imported.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy

import adamgen
from adamgen.generate import TARGETS, builtin_sources, check_builtins, generate
from adamgen import spec
from adamgen.resources import generated_dir, templates_dir
from adamgen.variants import builtin_variants

BUILTINS = builtin_variants()
IDS = [variant.name for _, _, variant in BUILTINS]
CPU_FILES = {variant.name: generated_dir() / "cpu" / f"{variant.name}.py" for _, _, variant in BUILTINS}
ALLOWED_IMPORTS = {"math", "numpy", "numba"}


# --- (a) fresh ---

def test_generated_folder_is_fresh():
    """What the generator produces now is byte for byte what generated/ holds, for every target."""
    problems = check_builtins()
    assert problems == [], "generated/ is stale; run `adamgen generate --builtins`:\n" + "\n".join(problems)


def test_freshness_check_sees_a_stale_file(tmp_path):
    """check_builtins is not vacuous: a one-character edit, a missing file and a stray file are all reported."""
    out = tmp_path / "generated"
    for rel, text in builtin_sources(("cpu",)).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    assert check_builtins(out, targets=("cpu",)) == []
    adam = out / "cpu" / "adam.py"
    adam.write_text(adam.read_text().replace("beta1", "beta_1", 1))
    (out / "cpu" / "adamax.py").unlink()
    (out / "cpu" / "sgd.py").write_text("")
    problems = check_builtins(out, targets=("cpu",))
    assert sorted(p.split("\n", 1)[0] for p in problems) == ["missing: cpu/adamax.py", "stale: cpu/adam.py",
                                                            "unexpected: cpu/sgd.py"]


# --- (b) self-contained ---

def _imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import: from {'.' * node.level}{node.module or ''} import ..."
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("name", IDS)
def test_cpu_module_imports_only_math_numpy_numba(name):
    modules = _imported_modules(CPU_FILES[name].read_text())
    assert {m.split(".")[0] for m in modules} <= ALLOWED_IMPORTS, sorted(modules)
    assert "numba" in modules and "numpy" in modules


def test_import_scan_sees_hidden_imports():
    assert _imported_modules("import math\ndef f():\n    import adamgen.spec\n") == {"math", "adamgen.spec"}
    assert _imported_modules("if True:\n    from torch import nn\n") == {"torch"}


# Runs in a fresh interpreter with the module files copied into a temporary folder. adamgen and torch are made
# unimportable; each module is imported from its file, stepped, and its results are reported as JSON.
_STANDALONE = textwrap.dedent("""
    import importlib.util, json, sys
    sys.modules["adamgen"] = None   # `import adamgen` now raises ImportError
    sys.modules["torch"] = None
    import numpy as np

    folder, names = sys.argv[1], sys.argv[2:]
    report = {}
    for name in names:
        try:
            spec = importlib.util.spec_from_file_location(name, f"{folder}/{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            param = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
            grad = np.cos(np.arange(12, dtype=np.float32)).reshape(3, 4)
            state = module.init(param)
            for _ in range(3):
                module.step(param, grad, state, lr=1e-2)
            report[name] = {"param": param.ravel().tolist(), "step": state["step"],
                            "adamgen_loaded": any(m.startswith("adamgen") and sys.modules[m] is not None
                                                  for m in sys.modules)}
        except Exception as error:
            report[name] = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def standalone_report(tmp_path_factory):
    """One subprocess for all modules: importing numba and compiling dominates, so do it once."""
    folder = tmp_path_factory.mktemp("vendored")
    for name, path in CPU_FILES.items():
        if path.exists():
            (folder / path.name).write_text(path.read_text())
    names = [name for name, path in CPU_FILES.items() if path.exists()]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "numba_cache")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", _STANDALONE, str(folder), *names], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", IDS)
def test_cpu_module_runs_copied_out_without_adamgen(name, standalone_report):
    if not CPU_FILES[name].exists():
        pytest.fail(f"generated/cpu/{name}.py is missing")
    report = standalone_report[name]
    assert "error" not in report, report.get("error")
    assert report["step"] == 3 and not report["adamgen_loaded"]
    # The copy computes what the packaged module computes.
    module = next(adamgen.load(n, **o) for n, o, v in BUILTINS if v.name == name)
    param = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    grad = np.cos(np.arange(12, dtype=np.float32)).reshape(3, 4)
    state = module.init(param)
    before = param.copy()
    for _ in range(3):
        module.step(param, grad, state, lr=1e-2)
    assert not np.array_equal(param, before)
    np.testing.assert_array_equal(np.array(report["param"], np.float32), param.ravel())


# --- (c) reproducible ---

def _digest(sources: dict) -> str:
    return hashlib.sha256("".join(f"{rel}\n{text}" for rel, text in sorted(sources.items())).encode()).hexdigest()


def test_generating_twice_is_byte_identical():
    first, second = builtin_sources(), builtin_sources()
    assert first.keys() == second.keys()
    for rel in first:
        assert first[rel] == second[rel], rel


_DIGEST = textwrap.dedent("""
    import hashlib, sys
    from adamgen.generate import builtin_sources
    sources = builtin_sources()
    print(hashlib.sha256("".join(f"{rel}\\n{text}" for rel, text in sorted(sources.items())).encode()).hexdigest())
""")


@pytest.mark.parametrize("hash_seed", ["0", "4242"])
def test_generation_does_not_depend_on_the_process(hash_seed, tmp_path):
    """Another interpreter, with another string-hash seed (set iteration order) and another working directory,
    generates the same bytes."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run([sys.executable, "-c", _DIGEST], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == _digest(builtin_sources())


_DATE = re.compile(r"\b(19|20)\d\d-\d\d-\d\d\b|\b\d\d?:\d\d:\d\d\b")  # 2026-11-24, 16:05:00


def _machine_paths() -> set[str]:
    paths = {Path.home(), Path.cwd(), Path(sys.prefix), Path(tempfile.gettempdir()), Path(adamgen.__file__).parent,
             generated_dir(), templates_dir(), Path(__file__).resolve().parent.parent}
    return {str(p) for p in paths if str(p) not in ("/", "")}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name, options, variant", BUILTINS, ids=IDS)
def test_header_has_no_timestamp_or_machine_path(name, options, variant, target):
    source = generate(variant, target)
    header = source[:source.index('"""', source.index('"""') + 3)]  # comment lines and module docstring
    assert header.startswith(f"# Generated by adamgen {adamgen.__version__} (SymPy {sympy.__version__}) from variant "
                             f"{variant.name} ")
    assert f"# Spec hash: sha256:{variant.content_hash()}" in header
    assert "Do not edit" in header and "# Regenerate with: adamgen generate " in header
    assert not _DATE.search(header), _DATE.search(header)
    for path in _machine_paths():
        assert path not in source, f"{path} appears in the generated {target} module"


# --- (d) metadata ---

@pytest.mark.parametrize("name, options, variant", BUILTINS, ids=IDS)
def test_metadata_matches_the_spec(name, options, variant):
    module = adamgen.load(name, **options)
    assert module.__name__ == f"adamgen.generated.cpu.{variant.name}"
    assert module.VARIANT == variant.name
    assert module.TARGET == "cpu"
    assert module.STATES == tuple(symbol.name for symbol, _ in variant.states)
    assert module.SCALAR_STATES == {symbol.name: init for symbol, init in variant.scalar_states}
    expected = {symbol.name: default for symbol, default in variant.hyperparameters}
    assert list(module.HYPERPARAMETERS) == [*expected, "maximize"]  # spec order, then torch's maximize flag
    assert module.HYPERPARAMETERS == {**expected, "maximize": False}
    assert module.SPEC_HASH == variant.content_hash()
    assert module.REFERENCE == variant.reference

    # step's keyword arguments are the hyperparameters, with the same defaults.
    parameters = inspect.signature(module.step).parameters
    assert list(parameters)[:3] == ["param", "grad", "state"]
    keywords = {p.name: p.default for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keywords == module.HYPERPARAMETERS

    # init gives exactly the declared state, shaped and typed like the parameter, with the declared initial values (a
    # copy of the parameter for a state declared with init=param).
    for dtype in (np.float32, np.float64):
        param = np.ones((2, 3), dtype)
        state = module.init(param)
        vectors = {s.name: init for s, init in variant.row_states + variant.col_states}
        assert set(state) == {"step", *module.STATES, *module.SCALAR_STATES, *vectors}
        for name, init in vectors.items():  # one value per row (2, 1) or column (1, 3), float64 on the host
            assert state[name].dtype == np.float64 and np.all(state[name] == init)
            assert state[name].shape == ((2, 1) if name in module.ROW_STATES else (1, 3))
        assert state["step"] == 0
        for symbol, init in variant.states:
            array = state[symbol.name]
            assert array.dtype == dtype and array.shape == (2, 3) and array.flags.c_contiguous
            assert np.all(array == (param if init is spec.param else init))
            assert not np.shares_memory(array, param)
        for symbol, init in variant.scalar_states:
            assert state[symbol.name] == init
