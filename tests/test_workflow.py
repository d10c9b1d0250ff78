"""The research workflow: `adamgen new`, the README tutorial run as written, and the digits example against
torch.optim."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import adamgen
from adamgen.cli import main as cli
from adamgen.loader import read_spec_file
from adamgen.variants import builtin

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def tutorial_blocks():
    """The tutorial section's code blocks in order: (language, code)."""
    section = README[README.index("## Tutorial:"):]
    following = section.find("\n## ", 1)
    section = section if following < 0 else section[:following]
    return [(language, textwrap_dedent(code)) for language, code in
            re.findall(r"^ *```(sh|py)\n(.*?)^ *```", section, re.S | re.M)]


def textwrap_dedent(code):
    import textwrap

    return textwrap.dedent(code)


# -- adamgen new -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["adamw", "adam", "nadam", "radam", "adamax"])
def test_new_writes_a_spec_with_the_base_rule(base, tmp_path, capsys):
    assert cli(["new", "mine", "--from", base, "--out", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    variant = read_spec_file(tmp_path / "mine.py")
    original = builtin(base)
    assert variant.name == "mine" and not variant.reference
    assert variant.definitions == original.definitions
    assert variant.updates == original.updates
    assert dict(variant.hyperparameters) == dict(original.hyperparameters)
    assert variant.states == original.states and variant.scalar_states == original.scalar_states


def test_new_adamw_is_standalone_and_matches_adamw_numerically(tmp_path, cache):
    assert cli(["new", "my_adamw", "--from", "adamw", "--out", str(tmp_path)]) == 0
    source = (tmp_path / "my_adamw.py").read_text()
    assert "decoupled_weight_decay" not in source and "import adam" not in source.replace("import adamgen", "")
    mine, reference = adamgen.load(tmp_path / "my_adamw.py"), adamgen.load("adamw")
    rng = np.random.default_rng(0)
    start = rng.standard_normal(100_000).astype(np.float32)  # above the parallel threshold
    params, states = [start.copy(), start.copy()], [mine.init(start), reference.init(start)]
    hyperparameters = {"lr": 3e-3, "beta1": 0.85, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1, "maximize": True}
    for _ in range(20):
        grad = rng.standard_normal(start.size).astype(np.float32)
        for module, param, state in zip((mine, reference), params, states):
            module.step(param, grad, state, **hyperparameters)
    np.testing.assert_array_equal(params[0], params[1])
    np.testing.assert_array_equal(states[0]["exp_avg_sq"], states[1]["exp_avg_sq"])
    assert not np.array_equal(params[0], start)


def test_new_refuses_bad_names_existing_files_and_unknown_bases(tmp_path, capsys):
    assert cli(["new", "not-an-identifier", "--from", "adam", "--out", str(tmp_path)]) == 2
    assert "not a valid variant name" in capsys.readouterr().err
    assert cli(["new", "mine", "--from", "no_such_base", "--out", str(tmp_path)]) == 2
    assert "no_such_base" in capsys.readouterr().err
    assert cli(["new", "mine", "--from", "adam", "--out", str(tmp_path)]) == 0
    (tmp_path / "mine.py").write_text("# my edits\n")
    assert cli(["new", "mine", "--from", "adam", "--out", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err and (tmp_path / "mine.py").read_text() == "# my edits\n"
    assert cli(["new", "mine", "--from", "nadam", "--out", str(tmp_path), "--force"]) == 0
    assert read_spec_file(tmp_path / "mine.py").name == "mine"


def test_new_copies_a_user_spec_file(spec_file, tmp_path):
    assert cli(["new", "copy_of_laggy", "--from", str(spec_file), "--out", str(tmp_path / "out")]) == 0
    variant = read_spec_file(tmp_path / "out" / "copy_of_laggy.py")
    assert variant.definitions == read_spec_file(spec_file).definitions


# -- the README tutorial, as written -----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.torch
def test_readme_tutorial_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    blocks = tutorial_blocks()
    assert [language for language, _ in blocks] == ["sh", "sh", "sh", "py", "sh"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "ADAMGEN_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    monkeypatch.setenv("ADAMGEN_CACHE_DIR", env["ADAMGEN_CACHE_DIR"])
    monkeypatch.chdir(tmp_path)
    outputs = []
    for language, code in blocks:
        if language == "py":
            namespace = {}
            exec(compile(code, "README.md tutorial", "exec"), namespace)
            outputs.append(namespace)
            continue
        for line in code.strip().splitlines():
            command = line.replace("python examples/", f"python {ROOT / 'examples'}/")
            result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=300)
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
            outputs.append(result.stdout)
    new, _, show, generate, namespace, training = outputs
    assert "wrote my_adamw.py" in new
    assert "(beta1 * m + (1 - beta1) * grad)" in (tmp_path / "my_adamw.py").read_text()  # the edit took
    assert "param_new = " in show and "beta1*exp_avg_new + grad*(1 - beta1)" in show
    assert (tmp_path / "kernels" / "cpu" / "my_adamw.py").is_file() and "cpu/my_adamw.py" in generate
    import adamgen.torch

    assert isinstance(namespace["optimizer"], adamgen.torch.Optimizer)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = [line.split() for line in training.splitlines() if re.match(r"\s*\d+\s+\d", line)]
    assert len(table) >= 5 and all(len(row) == 3 for row in table)
    first, last = table[0], table[-1]
    assert float(last[1]) < float(first[1]) / 2 and float(last[2]) < float(first[2]) / 2  # both train
    assert float(re.search(r"largest loss difference my_adamw.py vs adamw: (\S+)", training).group(1)) > 1e-3


# -- the digits example against torch.optim ----------------------------------------------------------------------------

def load_example():
    spec = importlib.util.spec_from_file_location("train_digits", ROOT / "examples" / "train_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.torch
@pytest.mark.parametrize("variant,torch_name,hyperparameters", [
    ("adamw", "torch:AdamW", {"lr": 3e-3}),
    ("nadam", "torch:NAdam", {"lr": 3e-3, "weight_decay": 1e-3}),
])
def test_digits_example_matches_torch_optim(variant, torch_name, hyperparameters):
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    example = load_example()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = example.load_digits()
        ours, our_accuracy = example.train(variant, data, epochs=2, **hyperparameters)
        theirs, their_accuracy = example.train(torch_name, data, epochs=2, **hyperparameters)
    finally:
        torch.set_num_threads(threads)
    assert len(ours) == len(theirs) == 24
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert ours[-1] < ours[0] / 2 and abs(our_accuracy - their_accuracy) < 0.01
