"""The adamgen command line."""

import os
import subprocess
import sys

import pytest

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
    entry = {name: ("\n" + out).split(f"\n{name}: ")[1].split("defaults:")[0] for name in ("adam", "lion")}
    assert "also (generated on first use): --corrected-weight-decay, --cautious-weight-decay, --clip-grad-norm" \
        in entry["lion"]
    # adam's decay is L2 in the gradient: neither decay option fits; clipping fits every variant
    assert "also (generated on first use): --clip-grad-norm, --stochastic-rounding, --kahan, --master-weights\n" \
        in entry["adam"]


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


def test_version(capsys):
    import adamgen

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"adamgen {adamgen.__version__}"


BAD_SPEC = "from adamgen.spec import Spec\n\nspec = Spec(undefined_name)\n"


@pytest.mark.parametrize("order", ["good first", "bad first"])
def test_generate_of_several_specs_writes_all_or_nothing(order, spec_file, tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_SPEC)
    names = [str(spec_file), str(bad)] if order == "good first" else [str(bad), str(spec_file)]
    out = tmp_path / "out"
    assert main(["generate", *names, "--out", str(out)]) == 2
    assert f"{bad}:3: running the spec file failed: NameError" in capsys.readouterr().err  # file and line
    assert not out.exists()


def test_generate_puts_everything_back_when_a_write_fails(tmp_path, monkeypatch):
    from adamgen import GenerateError, cli

    existing, new = tmp_path / "a" / "old.py", tmp_path / "b" / "c" / "new.py"
    existing.parent.mkdir()
    existing.write_text("before\n")
    replace, calls = os.replace, []

    def failing_replace(source, destination):
        calls.append(destination)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(destination))
        replace(source, destination)

    monkeypatch.setattr(cli.os, "replace", failing_replace)
    with pytest.raises(GenerateError, match="No space left on device; no file was written"):
        cli.write_all({existing: "after\n", new: "new\n"})
    assert len(calls) == 2 and existing.read_text() == "before\n"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["a", "a/old.py"]


def test_generate_refuses_two_variants_writing_one_file(spec_file, tmp_path, capsys):
    twin = tmp_path / "twin" / "laggy_adam.py"
    twin.parent.mkdir()
    twin.write_text(spec_file.read_text().replace("eps=1e-8", "eps=1e-6"))
    assert main(["generate", str(spec_file), str(twin), "--out", str(tmp_path / "out")]) == 2
    assert "would both write" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_generated_header_regenerates_with_the_options_and_out(spec_file, tmp_path, monkeypatch):
    monkeypatch.chdir(spec_file.parent)
    assert main(["generate", "laggy_adam.py", "--amsgrad", "--target", "cpu", "--out", "kernels"]) == 0
    header = (spec_file.parent / "kernels" / "cpu" / "laggy_adam_amsgrad.py").read_text().splitlines()[2]
    assert header == "# Regenerate with: adamgen generate laggy_adam.py --amsgrad --target cpu --out kernels"


def test_a_file_name_cannot_break_out_of_the_header_comment(tmp_path, monkeypatch):
    from adamgen.loader import command_line

    monkeypatch.chdir(tmp_path)
    line = command_line("x\nimport os\n.py", {"amsgrad": True}, "cpu", "a b")
    assert "\n" not in line and line == "adamgen generate $'x\\x0aimport os\\x0a.py' --amsgrad --target cpu --out 'a b'"


def test_spec_file_calling_exit_is_an_error_not_an_exit(tmp_path):
    path = tmp_path / "exits.py"
    path.write_text("import sys\nsys.exit(0)\n")
    result = subprocess.run([sys.executable, "-m", "adamgen", "show", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert f"adamgen: error: {path}:2: the spec file called exit(0)" in result.stderr


def test_demo_says_whether_the_kernels_were_compiled_or_loaded(tmp_path):
    env = {**os.environ, "ADAMGEN_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-m", "adamgen", "demo", "--steps", "5"], env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr
    assert runs[0].stdout.count("kernel compiled in") == 3 and "first call compiles" not in runs[0].stdout
    assert runs[1].stdout.count("kernel loaded from the cache in") == 3
