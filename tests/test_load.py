"""adamgen.load for built-ins and user spec files: caching, atomic writes, concurrent generation."""

import os
import subprocess
import sys
import textwrap

import numpy as np

import adamgen
from adamgen.loader import read_spec_file
from adamgen.oracle import Oracle


def test_builtin_with_options_is_the_shipped_module():
    module = adamgen.load("adamw", amsgrad=True)
    assert module.__name__ == "adamgen.generated.cpu.adamw_amsgrad"
    assert module.STATES == ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    assert module.HYPERPARAMETERS["weight_decay"] == 0.01


def test_user_spec_file_is_generated_into_the_cache_and_matches_its_oracle(spec_file, cache):
    module = adamgen.load(spec_file)
    generated = list((cache / "modules").glob("*.py"))
    assert [p.name for p in generated] == [f"{module.__name__}.py"]
    source = generated[0].read_text()
    assert str(spec_file.parent) not in source and "adamgen generate laggy_adam.py --target cpu" in source

    oracle = Oracle(read_spec_file(spec_file))
    rng = np.random.default_rng(3)
    p64 = rng.standard_normal(500)
    p32 = p64.astype(np.float32)
    s32, s64 = module.init(p32), oracle.init(p64)
    for _ in range(30):
        g = rng.standard_normal(500)
        module.step(p32, g.astype(np.float32), s32, lr=1e-2)
        oracle.step(p64, g, s64, lr=1e-2)
    np.testing.assert_allclose(p32, p64, rtol=1e-5, atol=1e-6)
    assert s32["step"] == 30


def test_loading_twice_reuses_the_module_and_the_file(spec_file, cache):
    first = adamgen.load(spec_file)
    mtime = (cache / "modules" / f"{first.__name__}.py").stat().st_mtime_ns
    assert adamgen.load(spec_file) is first
    assert (cache / "modules" / f"{first.__name__}.py").stat().st_mtime_ns == mtime


def test_an_edited_spec_gets_a_new_module(spec_file, cache):
    first = adamgen.load(spec_file)
    spec_file.write_text(spec_file.read_text().replace("eps=1e-8", "eps=1e-6"))
    second = adamgen.load(spec_file)
    assert second is not first and second.HYPERPARAMETERS["eps"] == 1e-6


def test_concurrent_processes_generate_the_same_file_safely(spec_file, cache):
    script = textwrap.dedent(f"""
        import numpy as np, adamgen
        m = adamgen.load({str(spec_file)!r})
        p = np.ones(10, np.float32); s = m.init(p); m.step(p, np.ones(10, np.float32), s)
        assert np.all(p < 1)
    """)
    env = {**os.environ, "ADAMGEN_CACHE_DIR": str(cache)}
    processes = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE) for _ in range(4)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    assert len(list((cache / "modules").glob("*.py"))) == 1
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]


def test_spec_objects_load_too(cache):
    from adamgen.spec import Spec, grad, param

    spec = Spec("plain_sgd")
    (lr,) = spec.hyperparameters(lr=0.5)
    spec.update(param, param - lr * grad)
    module = adamgen.load(spec)
    p = np.ones(4, np.float32)
    module.step(p, np.full(4, 2, np.float32), module.init(p))
    np.testing.assert_array_equal(p, np.zeros(4, np.float32))
