"""The adamgen command line."""

import subprocess
import sys


from adamgen.cli import main
from adamgen.generate import check_builtins, write_builtins
from adamgen.targets.cpu import CPU

PARALLEL_THRESHOLD = dict((name, value) for name, value, _ in CPU.constants)["PARALLEL_THRESHOLD"]
from adamgen.variants import builtin_variants


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["adam", "adamw", "adamax", "nadam", "radam", "schedulefree_adamw"]:
        assert f"\n{name}: " in "\n" + out
    assert "--amsgrad" in out and "--decoupled-weight-decay" in out and "reference: torch.optim.NAdam" in out


def test_show_plain_and_latex(capsys):
    assert main(["show", "adam", "--amsgrad"]) == 0
    out = capsys.readouterr().out
    assert "max_exp_avg_sq_new = Max(exp_avg_sq_new, max_exp_avg_sq)" in out
    assert "param <- param_new" in out
    assert main(["show", "radam", "--latex"]) == 0
    latex = capsys.readouterr().out
    assert latex.startswith(r"\begin{aligned}") and r"\mathrm{bias\_correction1} &= 1 - \beta_{1}^{step}" in latex


def test_generate_user_spec_into_its_folder(spec_file, capsys):
    assert main(["generate", str(spec_file), "--target", "cpu"]) == 0
    out = spec_file.parent / "cpu" / "laggy_adam.py"
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert main(["generate", str(spec_file), "--target", "cpu"]) == 0
    assert "unchanged" in capsys.readouterr().out


def test_generate_builtins_elsewhere_and_check_detects_staleness(tmp_path):
    written = write_builtins(tmp_path, targets=("cpu",))
    assert len(written) == 2 + len(builtin_variants())  # two package __init__ files and one module per built-in
    assert check_builtins(tmp_path, targets=("cpu",)) == []
    stale = tmp_path / "cpu" / "adam.py"
    stale.write_text(stale.read_text().replace(f"PARALLEL_THRESHOLD = {PARALLEL_THRESHOLD}", "PARALLEL_THRESHOLD = 1"))
    (tmp_path / "cpu" / "radamw.py").unlink()
    (tmp_path / "cpu" / "extra.py").write_text("")
    problems = check_builtins(tmp_path, targets=("cpu",))
    assert [p.splitlines()[0] for p in problems] == ["stale: cpu/adam.py", "missing: cpu/radamw.py",
                                                      "unexpected: cpu/extra.py"]
    assert "-PARALLEL_THRESHOLD = 1" in problems[0] and f"+PARALLEL_THRESHOLD = {PARALLEL_THRESHOLD}" in problems[0]


def test_check_passes_on_the_shipped_kernels():
    assert main(["check"]) == 0


def test_user_errors_exit_2_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "adamgen", "show", str(tmp_path / "nope.py")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "adamgen: error:" in result.stderr and "no such spec file" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs(capsys):
    assert main(["demo", "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "adamw" in out and "final" in out
