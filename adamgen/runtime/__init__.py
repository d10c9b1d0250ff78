"""Code that runs inside generated modules, kept here as plain Python so that it is linted and unit-tested as Python.

Each module here has a head (docstring, imports, stand-ins for the generated module's constants) and a body below
``INLINE_MARKER``. Templates inline the body verbatim into every generated module that needs it (``inline("cpu")``),
so generated modules stay self-contained (they import only math, numpy and numba) while the source exists once. Every
name a body defines starts with an underscore, so no spec name can collide with it.
"""

from __future__ import annotations

import functools
from pathlib import Path

INLINE_MARKER = "# --- inlined into generated modules from here on ---"


@functools.cache
def inline(name: str) -> str:
    """The body of ``adamgen/runtime/<name>.py`` (everything below its marker), headed by a line naming its source."""
    text = (Path(__file__).parent / f"{name}.py").read_text()
    head, marker, body = text.partition(INLINE_MARKER)
    if not marker:
        raise ValueError(f"adamgen/runtime/{name}.py has no line {INLINE_MARKER!r}")
    return f"# Inlined from adamgen/runtime/{name}.py.\n{body.strip()}\n"
