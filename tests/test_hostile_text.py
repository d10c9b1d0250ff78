"""Text from a user reaches a generated module only as an escaped literal, a comment that cannot end, or a checked
identifier; every generated module is compiled before it is handed out or written.

Hostile text goes into every field a user controls that is written into the module as text (the spec's doc and
reference, the spec file's name in the "Regenerate with" line); the module must compile, importing it must run nothing
but the module's own definitions, and the text must come back unchanged where the module keeps it.
"""

from __future__ import annotations

import builtins
import importlib.util
import subprocess
import sys

import pytest

import adamgen
from adamgen.errors import GenerateError
from adamgen.generate import TARGETS, generate
from adamgen.spec import Spec, grad, param

MARK = "adamgen_injected"
PAYLOAD = f"__import__('builtins').{MARK} = True"
HOSTILE = [
    f'"""\n{PAYLOAD}\n"""',
    f"'''\n{PAYLOAD}\n'''",
    f'end quote"\n{PAYLOAD}\n#',
    f"back\\slash\\\n{PAYLOAD}",
    f"carriage\r{PAYLOAD}\r",
    f"line separator\u2028{PAYLOAD}\u2029{PAYLOAD}",
    f"vertical tab\x0b{PAYLOAD}\x0c{PAYLOAD}",
    f"null\x00byte\n{PAYLOAD}",
    f"\\N{{DIGIT ONE}}\\x00 {{{{ jinja }}}} {{% raw %}} {PAYLOAD}",
    '"' * 7 + PAYLOAD + "'" * 5,
]


def _spec(doc: str, reference: str) -> Spec:
    spec = Spec("hostile", doc=doc, reference=reference)
    (lr,) = spec.hyperparameters(lr=1e-3)
    (m,) = spec.states("m")
    spec.update(m, 0.9 * m + grad)
    spec.update(param, param - lr * m)
    return spec


def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("text", HOSTILE, ids=[f"text{k}" for k in range(len(HOSTILE))])
def test_hostile_doc_and_reference_stay_text(text, target, tmp_path):
    source = generate(_spec(doc=text, reference=text), target, command=f"adamgen generate {text} --target {target}")
    compile(source, "hostile", "exec")
    path = tmp_path / "hostile.py"
    path.write_text(source)
    assert not hasattr(builtins, MARK)
    module = _import(path, f"hostile_{target}")
    assert not hasattr(builtins, MARK), "text from the spec ran as code"
    assert module.REFERENCE == text
    assert module.__doc__.startswith(text)


def test_hostile_spec_file_name(tmp_path, cache):
    """A spec file whose name holds a newline and code: loading and generating it writes that name only into a
    comment, and the command line run from the name's folder works."""
    name = f"evil\n{PAYLOAD}\n#.py"
    path = tmp_path / name
    path.write_text("from adamgen.spec import Spec, grad, param\n"
                    "spec = Spec('evil_name')\n"
                    "(lr,) = spec.hyperparameters(lr=1e-3)\n"
                    "spec.update(param, param - lr * grad)\n")
    module = adamgen.load(path)
    assert not hasattr(builtins, MARK)
    assert module.VARIANT == "evil_name"
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "adamgen", "generate", str(path), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for target in TARGETS:
        generated = (out / target / "evil_name.py").read_text()
        header = [line for line in generated.splitlines() if "Regenerate with" in line]
        assert len(header) == 1 and header[0].startswith("# Regenerate with: adamgen generate ")
        compile(generated, "evil", "exec")
        _import(out / target / "evil_name.py", f"evil_{target}")
        assert not hasattr(builtins, MARK)


def test_a_module_that_does_not_compile_is_never_handed_out(monkeypatch):
    """generate() compiles what it rendered: a template fault is a GenerateError, not a broken file."""
    import adamgen.generate as generation

    monkeypatch.setattr(generation, "render", lambda module: "def broken(:\n")
    with pytest.raises(GenerateError, match="does not compile"):
        generation.generate(_spec("doc", "ref"))
