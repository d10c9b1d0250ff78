"""Rendering and writing: printed fragments into a target's Jinja2 template, then onto disk atomically."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import jinja2

from .resources import templates_dir
from .runtime import inline


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(pyrepr=repr, comment=comment, docstring=docstring)
    env.globals["inline"] = inline
    env.globals["zip"] = zip
    return env


def render(module) -> str:
    """Fill the template of ``module.target`` with ``module`` (a ``generate.Module``). Deterministic: equal modules
    give equal bytes."""
    return environment().get_template(module.target.template).render(module=module, printed=module.printed)


def comment(text, prefix: str = "# ") -> str:
    """``text`` as Python comment lines: every line of it starts with ``prefix``, whatever line breaks or control
    characters it holds (they are written escaped), so it cannot end the comment."""
    lines = str(text).splitlines() or [""]
    return "\n".join((prefix + _printable(line)).rstrip() for line in lines)


def docstring(text) -> str:
    """``text`` as a string literal for a docstring: triple-quoted when that reads back as the same text, else
    ``repr`` (a literal whatever the text holds)."""
    text = str(text)
    plain = all(c.isprintable() or c == "\n" for c in text)
    if plain and '"""' not in text and "\\" not in text and not text.endswith('"'):
        return f'"""{text}"""'
    return repr(text)


def _printable(line: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, then a rename), only if it differs.

    Safe when several processes write the same file at once: each rename installs a complete file. Returns whether the
    file was written."""
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
