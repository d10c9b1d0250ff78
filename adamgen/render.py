"""Rendering and writing: printed fragments into a target's Jinja2 template, then onto disk atomically."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import jinja2

from .resources import templates_dir


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
    env.filters["pyrepr"] = repr
    return env


def render(target: str, context: dict) -> str:
    """Fill the template ``<target>.py.j2`` with ``context``. Deterministic: equal contexts give equal bytes."""
    return environment().get_template(f"{target}.py.j2").render(context)


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
