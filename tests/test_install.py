"""A plain, non-editable install works: templates and generated kernels ship inside the wheel."""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    (path,) = out.glob("adamgen-*.whl")
    return path


def test_wheel_contains_templates_and_generated_kernels(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"adamgen/templates/base.py.j2", "adamgen/templates/cpu.py.j2", "adamgen/generated/cpu/adamw.py",
            "adamgen/variants/adam.py", "adamgen/cli.py"} <= names


def test_a_checkout_on_the_path_works_with_no_install(tmp_path):
    """`PYTHONPATH=.` in a checkout (what benchmarks/gpu_check.sh does on a machine where nothing is installed): the
    top-level generated/ and templates/ become adamgen.generated and adamgen.templates. The editable install's finder
    is taken out of the child's import system first, so that it cannot provide them."""
    script = textwrap.dedent(f"""
        import sys
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        import adamgen, adamgen.generated, adamgen.templates
        module = adamgen.load("adamw")
        custom = adamgen.load("lion", clip_grad_norm=True)  # generated from the templates
        p = np.ones(3, np.float32)
        module.step(p, p.copy(), module.init(p))
        print(adamgen.generated.__path__[0], adamgen.templates.__path__[0], module.__file__, custom.VARIANT, p[0])
    """)
    env = {**os.environ, "ADAMGEN_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    generated, templates, module, variant, value = result.stdout.split()
    assert (generated, templates) == (str(ROOT / "generated"), str(ROOT / "templates"))
    assert module == str(ROOT / "generated" / "cpu" / "adamw.py") and variant == "lion_clip_grad_norm"
    assert float(value) < 1


def test_installed_package_works_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    script = textwrap.dedent(f"""
        import numpy as np, adamgen
        from adamgen.generate import check_builtins
        assert adamgen.__file__.startswith({str(site)!r}), adamgen.__file__
        m = adamgen.load("adamw")
        assert m.__file__.startswith({str(site)!r})
        p = np.ones(8, np.float32); s = m.init(p); m.step(p, np.ones(8, np.float32), s)
        assert check_builtins(targets=("cpu",)) == []
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(site), "ADAMGEN_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

    # `adamgen generate` with no variant rewrites generated/ in a checkout; an installed package is left alone
    files = {p: p.stat().st_mtime_ns for p in (site / "adamgen").rglob("*")}
    result = subprocess.run([sys.executable, "-m", "adamgen", "generate"], cwd=tmp_path, env=env, capture_output=True,
                            text=True)
    assert result.returncode == 2 and "not a source checkout" in result.stderr and "Traceback" not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in (site / "adamgen").rglob("*")} == files


# -- the README's quick start: both install commands, one after the other, in one clone --------------------------------

QUICK_START_SPEC = '''
from adamgen.spec import Spec, grad, param

spec = Spec("plain_sgd", doc="Plain SGD.")
(lr,) = spec.hyperparameters(lr=0.5)
spec.update(param, param - lr * grad)
'''


@pytest.mark.slow
def test_quick_start_install_then_editable_install_in_one_clone(tmp_path):
    """SLOW (about 30 s: two pip installs and three interpreters). The README's quick-start sequence in one copy of
    the checkout: `pip install .` and `adamgen demo`, then `pip install -e .` in the same venv, then adamgen used from
    outside the checkout. The venv reaches this environment's packages through a .pth file and pip runs with --no-deps
    and --no-build-isolation, so nothing is downloaded. Before the cache folder existed, the demo left numba's cache
    files inside the installed package, pip could not remove them, and the empty package they kept shadowed the editable
    install."""
    clone, home, outside = tmp_path / "clone", tmp_path / "home", tmp_path / "outside"
    shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build",
                                                               "dist", ".pytest_cache", "kernels", "*.nbi", "*.nbc"))
    outside.mkdir()
    (outside / "plain_sgd.py").write_text(QUICK_START_SPEC)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(clone / ".venv")], check=True)
    python = clone / ".venv" / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(here)))
    env = {k: v for k, v in os.environ.items() if k not in ("ADAMGEN_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env["HOME"] = str(home)  # the default cache folder, ~/.cache/adamgen, as a newcomer has it

    def sh(*command, cwd=clone):
        result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr[-3000:]}"
        return result.stdout

    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    sh(*install, ".")  # the first command: pip install . && adamgen demo
    record = {line.split(",")[0] for line in next(site.glob("adamgen-*.dist-info")).joinpath("RECORD").read_text()
              .splitlines() if line.startswith("adamgen/")}
    demo = sh(clone / ".venv" / "bin" / "adamgen", "demo", "--steps", "20")
    assert demo.count("kernel compiled") == 3 and "first call compiles" not in demo
    assert "kernel loaded from the cache" in sh(clone / ".venv" / "bin" / "adamgen", "demo", "--steps", "5")
    installed = {str(p.relative_to(site)) for p in (site / "adamgen").rglob("*") if p.is_file()}
    assert installed == record  # nothing written inside the installed package
    assert list((home / ".cache" / "adamgen" / "numba").rglob("*.nbc"))

    sh(*install, "-e", ".")  # the second command: pip install -e . (torch and the test extras are already here)
    assert not (site / "adamgen").exists()
    script = ("import adamgen, numpy as np\n"
              "m = adamgen.load('adamw'); u = adamgen.load('plain_sgd.py')\n"
              "p = np.ones(4, np.float32); u.step(p, np.ones(4, np.float32), u.init(p)); assert (p == 0.5).all()\n"
              "print(adamgen.__file__, m.__file__)\n")
    assert sh(python, "-c", script, cwd=outside).split() == [str(clone / "adamgen" / "__init__.py"),
                                                             str(clone / "generated" / "cpu" / "adamw.py")]
    assert "wrote" in sh(clone / ".venv" / "bin" / "adamgen", "generate", "plain_sgd.py", "--target", "cpu", "--out",
                         "kernels", cwd=outside)
    assert (outside / "kernels" / "cpu" / "plain_sgd.py").is_file()
    assert sh(clone / ".venv" / "bin" / "adamgen", "--version", cwd=outside).strip() == f"adamgen {adamgen_version()}"


def adamgen_version() -> str:
    import adamgen

    return adamgen.__version__
