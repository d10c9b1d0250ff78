"""The cache folder (adamgen/cache.py): where it is, that kernels are cached there and never beside a module, and that
damaged files, read-only folders, a full disk, no home folder and concurrent processes all still give working kernels.

Each scenario runs in a fresh interpreter (numba's locators and caches are per process). As root, whom file permissions
do not bind, the scenarios run without the capabilities that override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
CAP_FOWNER), so that a folder with mode 555 is read-only to them as to anyone."""

from __future__ import annotations

import ctypes
import inspect
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import adamgen
from adamgen import cache as adamgen_cache

from conftest import CUSTOM_SPEC

ROOT = Path(__file__).resolve().parent.parent

# Loads a built-in and a spec file, steps each three times, and reports what numba did and which warnings came.
SCRIPT = """
import json, sys, warnings
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import adamgen, adamgen.cache
    modules = [adamgen.load("adamw"), adamgen.load(sys.argv[1])]
    params = []
    for module in modules:
        p = np.linspace(-1, 1, 64, dtype=np.float32)
        s = module.init(p)
        for _ in range(3):
            module.step(p, np.cos(3 * p), s, lr=1e-2)
        params.append(p.tolist())
kernels = [[v for v in vars(m).values() if hasattr(v, "stats") and hasattr(v, "py_func")] for m in modules]
print(json.dumps({
    "hits": [sum(sum(k.stats.cache_hits.values()) for k in ks) for ks in kernels],
    "misses": [sum(sum(k.stats.cache_misses.values()) for k in ks) for ks in kernels],
    "caches": sorted({type(k._cache).__name__ for ks in kernels for k in ks}),
    "files": [getattr(m, "__file__", None) for m in modules],
    "params": params,
    "warnings": [str(w.message) for w in caught if issubclass(w.category, adamgen.cache.CacheWarning)],
}))
"""


def _drop_permission_overrides() -> None:
    """In a child process of root: drop the capabilities that override file permissions, for it and what it runs."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture(scope="module")
def bound():
    """A preexec function after which file permissions bind the child (None: not possible here)."""
    if os.geteuid() != 0:
        return lambda: None
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o555)
    try:
        probe = subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1] + '/probe', 'w')", str(folder)],
                               preexec_fn=_drop_permission_overrides, capture_output=True, text=True)
        return _drop_permission_overrides if "PermissionError" in probe.stderr else None
    except OSError:
        return None
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


@pytest.fixture
def place(bound):
    """A fresh folder with the spec file in it."""
    folder = Path(tempfile.mkdtemp(prefix="adamgen-cache-test-"))
    (folder / "laggy_adam.py").write_text(CUSTOM_SPEC)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


def run(place: Path, bound, env: dict, file_size_limit: int | None = None) -> dict:
    """SCRIPT in a fresh interpreter, with ``env`` over an environment free of cache settings."""
    environment = {k: v for k, v in os.environ.items() if k not in ("ADAMGEN_CACHE_DIR", "XDG_CACHE_HOME")}
    environment.update(HOME=str(place / "home"), PYTHONDONTWRITEBYTECODE="1", **env)

    def prepare():
        if bound is not None:
            bound()
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    result = subprocess.run([sys.executable, "-c", SCRIPT, str(place / "laggy_adam.py")], env=environment, cwd=place,
                            capture_output=True, text=True, timeout=300, preexec_fn=prepare)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def package_files() -> dict[str, int]:
    """Every file of the package (sources, templates, shipped kernels) with its modification time."""
    return {str(p): p.stat().st_mtime_ns for folder in ("adamgen", "generated", "templates")
            for p in (ROOT / folder).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def reference(bound):
    """A warm cache, and the report of the run that made it (kernels compiled, then cached)."""
    folder = Path(tempfile.mkdtemp(prefix="adamgen-cache-warm-"))
    (folder / "laggy_adam.py").write_text(CUSTOM_SPEC)
    report = run(folder, bound, {"ADAMGEN_CACHE_DIR": str(folder / "cache")})
    yield folder / "cache", report
    shutil.rmtree(folder)


def copy_cache(reference, place: Path) -> Path:
    shutil.copytree(reference[0], place / "cache")
    return place / "cache"


# -- where -------------------------------------------------------------------------------------------------------------

def test_cache_folder_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ADAMGEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert adamgen_cache.cache_dir() == tmp_path / "home" / ".cache" / "adamgen"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
    assert adamgen_cache.cache_dir() == tmp_path / "home" / ".cache" / "adamgen"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert adamgen_cache.cache_dir() == tmp_path / "xdg" / "adamgen"
    monkeypatch.setenv("ADAMGEN_CACHE_DIR", str(tmp_path / "mine"))
    assert adamgen_cache.cache_dir() == tmp_path / "mine"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADAMGEN_CACHE_DIR", "relative")
    assert adamgen_cache.cache_dir() == tmp_path / "relative"
    monkeypatch.setenv("ADAMGEN_CACHE_DIR", "")
    assert adamgen_cache.cache_dir() is None


def test_kernels_are_cached_in_the_cache_folder_never_beside_the_modules(reference, place, bound):
    folder, first = reference
    assert first["misses"][0] > 0 and first["misses"][1] > 0 and first["caches"] == ["CheckedFunctionCache"]
    assert first["warnings"] == []
    assert first["files"][1] == str(folder / "modules" / Path(first["files"][1]).name)
    assert np.abs(np.array(first["params"]) - np.linspace(-1, 1, 64)).max() > 1e-3  # the steps moved the parameters
    kernels = sorted(p.relative_to(folder / "numba").parts[0] for p in (folder / "numba").rglob("*.nbc"))
    assert any(k.startswith("adamw-") for k in kernels)
    assert any(k.startswith("adamgen_laggy_adam_cpu_") for k in kernels)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # private

    before = package_files()
    second = run(place, bound, {"ADAMGEN_CACHE_DIR": str(copy_cache(reference, place))})
    assert second["misses"] == [0, 0] and second["hits"][0] > 0 and second["hits"][1] > 0
    assert second["params"] == first["params"] and second["warnings"] == []
    assert package_files() == before  # nothing written, nothing touched in the package


def test_damaged_cache_files_are_detected_and_rebuilt(reference, place, bound):
    folder = copy_cache(reference, place)
    builtin, spec = sorted((folder / "numba").rglob("*.nbc"), key=lambda p: not p.parent.name.startswith("adamw-"))[:2]
    builtin.write_bytes(builtin.read_bytes()[: builtin.stat().st_size // 2])  # truncated
    data = bytearray(spec.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one corrupted byte, deep inside the pickled object code
    spec.write_bytes(bytes(data))
    damaged = run(place, bound, {"ADAMGEN_CACHE_DIR": str(folder)})
    assert damaged["params"] == reference[1]["params"]
    assert damaged["misses"][0] > 0 and damaged["misses"][1] > 0
    assert len(damaged["warnings"]) == 2 and all("is damaged" in w for w in damaged["warnings"])
    rebuilt = run(place, bound, {"ADAMGEN_CACHE_DIR": str(folder)})
    assert rebuilt["misses"] == [0, 0] and rebuilt["warnings"] == [] and rebuilt["params"] == reference[1]["params"]
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# -- folders that cannot be written ------------------------------------------------------------------------------------

def needs_bound(bound):
    if bound is None:
        pytest.skip("running as root, and the capabilities that override file permissions cannot be dropped here")


def test_read_only_warm_cache_is_used(reference, place, bound):
    needs_bound(bound)
    folder = copy_cache(reference, place)
    make_read_only(folder)
    report = run(place, bound, {"ADAMGEN_CACHE_DIR": str(folder)})
    assert report["misses"] == [0, 0] and report["warnings"] == [] and report["params"] == reference[1]["params"]
    assert report["files"][1].startswith(str(folder / "modules"))


def test_read_only_cache_without_compiled_kernels_compiles_in_memory(reference, place, bound):
    needs_bound(bound)
    folder = copy_cache(reference, place)
    shutil.rmtree(folder / "numba")
    make_read_only(folder)
    report = run(place, bound, {"ADAMGEN_CACHE_DIR": str(folder)})
    assert report["params"] == reference[1]["params"]
    assert report["files"][1].startswith(str(folder / "modules"))  # the cached module is still used
    assert len(report["warnings"]) == 1 and "cannot write to its cache folder" in report["warnings"][0]
    assert not (folder / "numba").exists()


def test_no_writable_home(reference, place, bound):
    """The default folder, ~/.cache/adamgen, cannot be made: nothing is written, in the package or elsewhere."""
    needs_bound(bound)
    (place / "home").mkdir()
    make_read_only(place / "home")
    before = package_files()
    report = run(place, bound, {})
    assert package_files() == before
    assert report["params"] == reference[1]["params"]
    assert len(report["warnings"]) == 1 and str(place / "home" / ".cache" / "adamgen") in report["warnings"][0]
    temporary = Path(report["files"][1])
    assert temporary.parent.name.startswith("adamgen-") and not temporary.parent.exists()  # removed at exit
    assert list((place / "home").iterdir()) == []


def test_full_disk_with_room_for_the_module_but_not_for_compiled_kernels(reference, place, bound):
    """A file size limit halfway between the sizes the warm run wrote: the spec's module (about 42 KB) fits, a compiled
    kernel (45 KB and more) does not."""
    module = max((p for p in (reference[0] / "modules").iterdir() if p.suffix == ".py"), key=lambda p: p.stat().st_size)
    kernels = [p.stat().st_size for p in (reference[0] / "numba").rglob("*.nbc")]
    assert module.stat().st_size < min(kernels), (module.stat().st_size, kernels)
    folder = place / "cache"
    report = run(place, bound, {"ADAMGEN_CACHE_DIR": str(folder)},
                 file_size_limit=(module.stat().st_size + min(kernels)) // 2)
    assert report["params"] == reference[1]["params"]
    assert len(report["warnings"]) == 1 and "cannot write to its cache folder" in report["warnings"][0]
    assert report["files"][1].startswith(str(folder / "modules"))
    assert [p for p in (folder / "numba").rglob("*") if p.is_file()] == []  # no partial file, no temporary file


def test_empty_cache_variable_turns_the_cache_off(reference, place, bound):
    (place / "home").mkdir()
    report = run(place, bound, {"ADAMGEN_CACHE_DIR": ""})
    assert report["params"] == reference[1]["params"] and report["warnings"] == []
    assert report["caches"] == ["NullCache"]  # nothing cached on disk: compiled in memory
    assert not Path(report["files"][1]).exists()  # a temporary folder, removed at exit
    assert list((place / "home").iterdir()) == [] and list(place.iterdir()) == [place / "home",
                                                                                   place / "laggy_adam.py"]


def test_a_module_runs_from_memory_when_nothing_is_writable(monkeypatch, tmp_path, cache):
    from numba.core.caching import NullCache

    from adamgen.loader import read_spec_file
    from adamgen.oracle import Oracle

    path = tmp_path / "in_memory.py"
    path.write_text(CUSTOM_SPEC.replace('"laggy_adam"', '"laggy_in_memory"'))
    monkeypatch.setattr(adamgen_cache, "module_file", lambda name, source: None)
    module = adamgen.load(path)
    assert module.VARIANT == "laggy_in_memory" and not hasattr(module, "__file__")
    assert "def step(" in inspect.getsource(module.step)  # tracebacks and numba's messages can show the code
    kernels = [v for v in vars(module).values() if hasattr(v, "py_func")]
    assert kernels and all(isinstance(k._cache, NullCache) for k in kernels)
    oracle = Oracle(read_spec_file(path))
    p32, p64 = np.linspace(-1, 1, 50, dtype=np.float32), np.linspace(-1, 1, 50)
    s32, s64 = module.init(p32), oracle.init(p64)
    for step in range(5):
        g = np.sin(np.arange(50) + step)
        module.step(p32, g.astype(np.float32), s32, lr=1e-2)
        oracle.step(p64, g, s64, lr=1e-2)
    np.testing.assert_allclose(p32, p64, rtol=1e-5, atol=1e-6)
    assert not cache.exists()


# -- concurrent processes ----------------------------------------------------------------------------------------------

def test_concurrent_processes_share_one_cache(reference, place, bound):
    folder = place / "cache"
    environment = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME",)}
    environment.update(ADAMGEN_CACHE_DIR=str(folder), HOME=str(place / "home"))
    processes = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(place / "laggy_adam.py")], env=environment,
                                  cwd=place, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
        assert report["params"] == reference[1]["params"] and report["warnings"] == []
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]
    after = run(place, bound, {"ADAMGEN_CACHE_DIR": str(folder)})
    assert after["misses"] == [0, 0] and after["params"] == reference[1]["params"]


# -- CUDA (no GPU needed) ----------------------------------------------------------------------------------------------

CUDA_SCRIPT = """
import json, os, sys
import adamgen
modules = [adamgen.load("adam", target="cuda"), adamgen.load(sys.argv[1], target="cuda")]
kernels = [v for m in modules for v in vars(m).values() if type(v).__name__ == "CUDADispatcher"]
marked = kernels[0]._cache.mark_launch_config_sensitive()
print(json.dumps({"caches": sorted({type(k._cache).__name__ for k in kernels}),
                  "paths": sorted({k._cache.cache_path for k in kernels}), "marked": marked,
                  "count": len(kernels)}))
"""


@pytest.mark.cuda
def test_cuda_kernels_cache_in_the_cache_folder(place):
    pytest.importorskip("numba.cuda.dispatcher", reason="numba-cuda cannot be imported here")
    folder = place / "cache"
    environment = {**os.environ, "ADAMGEN_CACHE_DIR": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    environment.pop("NUMBA_ENABLE_CUDASIM", None)
    before = package_files()
    result = subprocess.run([sys.executable, "-c", CUDA_SCRIPT, str(place / "laggy_adam.py")], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["count"] >= 2 and report["caches"] == ["CheckedCUDACache"] and report["marked"]
    assert all(Path(p).parent == folder / "numba" for p in report["paths"])
    assert len([p for p in report["paths"] if Path(p).name.startswith("adam-")]) == 1
    assert [p.suffix for p in (folder / "numba").rglob("*") if p.is_file()] == [".lcs"]  # the one marker written
    assert package_files() == before
