"""adamgen.load for built-ins and user spec files (concurrent processes and cache faults: test_cache.py)."""

import re

import numpy as np

import adamgen
from adamgen.loader import read_spec_file
from adamgen.oracle import Oracle


def test_builtin_with_options_is_the_shipped_module():
    module = adamgen.load("adamw", amsgrad=True)
    assert module.__name__ == "adamgen.generated.cpu.adamw_amsgrad"
    assert module.STATES == ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    assert module.HYPERPARAMETERS["weight_decay"] == 0.01


def test_builtin_with_an_option_it_does_not_ship_is_generated_into_the_cache(cache):
    """radam lists no amsgrad option, yet has a second moment named exp_avg_sq: the option fits, and the module is
    generated into the cache folder (with the command that writes it) rather than looked up among the shipped ones."""
    from adamgen.variants import builtin, with_options

    module = adamgen.load("radam", amsgrad=True)
    assert module.__file__.startswith(str(cache)) and module.VARIANT == "radam_amsgrad"
    assert "adamgen generate radam --amsgrad --target cpu" in open(module.__file__).read()
    oracle = Oracle(with_options(builtin("radam"), amsgrad=True))
    rng = np.random.default_rng(5)
    p64 = rng.standard_normal(300)
    p32, s64 = p64.astype(np.float32), oracle.init(p64)
    s32 = module.init(p32)
    for _ in range(20):
        g = rng.standard_normal(300) * rng.uniform(0.1, 3.0)  # gradients of changing size: the maximum matters
        module.step(p32, g.astype(np.float32), s32, lr=1e-2)
        oracle.step(p64, g, s64, lr=1e-2)
    np.testing.assert_allclose(p32, p64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s32["max_exp_avg_sq"], s64["max_exp_avg_sq"], rtol=1e-5)


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


def test_spec_objects_load_too(cache):
    from adamgen.spec import Spec, grad, param

    spec = Spec("plain_sgd")
    (lr,) = spec.hyperparameters(lr=0.5)
    spec.update(param, param - lr * grad)
    module = adamgen.load(spec)
    p = np.ones(4, np.float32)
    module.step(p, np.full(4, 2, np.float32), module.init(p))
    np.testing.assert_array_equal(p, np.zeros(4, np.float32))


def test_spec_file_errors_name_the_file_and_line(tmp_path):
    import pytest

    from adamgen import SpecError

    undefined = tmp_path / "undefined.py"
    undefined.write_text("from adamgen.spec import Spec\n\nspec = Spec(name_not_defined)\n")
    with pytest.raises(SpecError, match=r"undefined.py:3: running the spec file failed: NameError: name "
                                        r"'name_not_defined' is not defined"):
        adamgen.load(undefined)
    transformed = tmp_path / "transformed.py"  # an adamgen error raised while the file runs (as built-ins are written)
    transformed.write_text("from adamgen.transforms import amsgrad\nfrom adamgen.variants import builtin\n\n"
                           "spec = amsgrad(builtin('lion'))\n")
    with pytest.raises(SpecError, match=r"transformed.py:4: amsgrad needs a second-moment state"):
        adamgen.load(transformed)
    invalid = tmp_path / "invalid.py"  # found when the spec is checked, after the file ran: no line to name
    invalid.write_text("from adamgen.spec import Spec\nspec = Spec('invalid')\nspec.hyperparameters(lr=1.0)\n")
    with pytest.raises(SpecError, match=r"^\S*invalid.py: variant 'invalid': no update given for param"):
        adamgen.load(invalid)


def test_a_spec_file_calling_exit_does_not_end_the_caller(tmp_path):
    import pytest

    from adamgen import SpecError

    for code, shown in [("exit(0)", "exit(0)"), ("import sys\nsys.exit('done')", "exit('done')")]:
        path = tmp_path / "exits.py"
        path.write_text(code + "\n")
        with pytest.raises(SpecError, match=rf"exits.py:\d: the spec file called {re.escape(shown)}"):
            adamgen.load(path)


def test_the_cached_module_header_names_the_options(spec_file, cache):
    module = adamgen.load(spec_file, amsgrad=True)
    header = (cache / "modules" / f"{module.__name__}.py").read_text().splitlines()[2]
    assert header == "# Regenerate with: adamgen generate laggy_adam.py --amsgrad --target cpu"
