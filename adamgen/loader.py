"""``adamgen.load``: a generated module for a built-in variant or for a user's spec file."""

from __future__ import annotations

import hashlib
import importlib
import os
import runpy
import shlex
import traceback
from pathlib import Path
from types import ModuleType

from . import cache
from .errors import AdamgenError, GenerateError, SpecError
from .spec import Variant
from .variants import BUILTINS, OPTIONS, as_variant, builtin, with_options

cache_dir = cache.cache_dir  # where spec modules and compiled kernels are cached; see adamgen/cache.py


def load(variant, target: str = "cpu", **options) -> ModuleType:
    """The generated module for ``variant`` on ``target`` (``"cpu"`` or ``"cuda"``).

    ``variant`` is a built-in name (``"adamw"``), a path to a spec file (a Python file defining ``spec``; it is run, so
    load only files you trust), or a ``Spec`` / ``Variant`` object. ``options`` are transforms such as
    ``amsgrad=True`` or ``decoupled_weight_decay=True``. Built-ins with the options they list (``adamgen list``) come
    from the shipped ``generated/`` folder; anything else (a built-in with another option that fits it included) is
    generated into the cache folder (``adamgen.cache``) under the hash of its generated source (written
    atomically, so concurrent processes are safe) and imported from there. Compiled kernels are cached in the cache
    folder, never beside the module.
    """
    from .generate import generate
    from .targets import target as find_target

    target = find_target(target).name
    if isinstance(variant, str) and variant in BUILTINS:
        checked = with_options(builtin(variant), **options)
        if {name for name, on in options.items() if on} <= set(BUILTINS[variant]):  # shipped in generated/
            return importlib.import_module(f"adamgen.generated.{target}.{checked.name}")  # cached by adamgen.cache
        command = command_line(variant, options, target)
    elif isinstance(variant, (str, os.PathLike)):
        path = Path(variant)
        checked = with_options(read_spec_file(path), **options)
        command = command_line(path.name, options, target)
    else:
        checked = with_options(as_variant(variant), **options)
        command = None
    source = generate(checked, target, command)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return cache.import_generated(f"adamgen_{checked.name}_{target}_{digest}", source, target)


def command_line(variant: str, options: dict, target: str, out: str | os.PathLike | None = None) -> str:
    """The ``adamgen generate`` command that writes this variant's module for ``target``, as one line of shell.

    Arguments are shell-quoted; one with a character that is not printable (a newline in a file name, say) is written
    in ANSI-C quoting (``$'...'``), so the line stays one comment line in the generated header."""
    words = ["adamgen", "generate", str(variant), *(f"--{o.replace('_', '-')}" for o in OPTIONS if options.get(o)),
             "--target", target]
    if out is not None:
        words += ["--out", str(out)]
    return " ".join(_shell_word(word) for word in words)


def _shell_word(word: str) -> str:
    if word.isprintable():
        return shlex.quote(word)
    escaped = "".join(c if c.isprintable() and c not in "\\'" else
                      ("\\" + c if c in "\\'" else "\\x%02x" % ord(c) if ord(c) < 0x100 else "\\U%08x" % ord(c))
                      for c in word)
    return f"$'{escaped}'"


def read_spec_file(path: Path) -> Variant:
    """Run a spec file (it is Python: it runs with your rights) and return its checked ``spec``.

    Errors in the file surface as ``SpecError`` naming the file and, when they come from a line of it, the line."""
    path = Path(path)
    if not path.is_file():
        raise GenerateError(f"{path}: no such spec file, and not a built-in variant ({', '.join(BUILTINS)})")
    try:
        namespace = runpy.run_path(str(path))
    except SystemExit as error:  # exit() or sys.exit() in a spec file must not end the caller
        raise SpecError(f"{_where(path, error)}: the spec file called exit({error.code!r}) instead of defining "
                        "`spec`") from None
    except AdamgenError as error:
        raise type(error)(f"{_where(path, error)}: {error}") from error
    except Exception as error:
        raise SpecError(f"{_where(path, error)}: running the spec file failed: {type(error).__name__}: {error}") \
            from error
    if "spec" not in namespace:
        raise SpecError(f"{path}: a spec file must define a module-level `spec` (an adamgen.spec.Spec)")
    try:
        return as_variant(namespace["spec"])
    except AdamgenError as error:
        raise type(error)(f"{path}: {error}") from error


def _where(path: Path, error: BaseException) -> str:
    """``path:line`` for the last line of ``path`` in the error's traceback, else ``path`` (a syntax error's message
    names its line itself)."""
    target = os.path.realpath(path)
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if frame.filename and os.path.realpath(frame.filename) == target]
    return f"{path}:{lines[-1]}" if lines else str(path)
