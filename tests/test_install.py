"""A plain, non-editable install works: templates and generated kernels ship inside the wheel."""

import os
import subprocess
import sys
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
