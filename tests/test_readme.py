"""The README's Python examples run as written, and its test command is the one CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("code", [pytest.param(code, id=f"example{i}",
                                               marks=[pytest.mark.torch] if "torch" in code else [])
                                  for i, code in enumerate(EXAMPLES)])
def test_readme_example_runs(code, cache):
    exec(compile(code, "README.md", "exec"), {})


def test_custom_variant_example_clips_the_update(cache):
    namespace = {}
    exec(compile(EXAMPLES[0], "README.md", "exec"), namespace)
    p0 = __import__("numpy").random.default_rng(0).standard_normal(1_000_000).astype("float32")
    # first step: the bias-corrected Adam direction is +-1 per element, clipped to 0.5, times lr=1e-2
    expected = p0 * (1 - 1e-2 * 1e-2) - 1e-2 * 0.5
    assert abs(namespace["p"] - expected).max() < 1e-6


def test_ci_runs_the_readme_test_command():
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"    {command}\n" in README
