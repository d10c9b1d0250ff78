"""``adamgen.load``: a generated module for a built-in variant or for a user's spec file."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import runpy
import sys
from pathlib import Path
from types import ModuleType

from .errors import AdamgenError, GenerateError, SpecError
from .spec import Variant
from .variants import BUILTINS, as_variant, builtin, with_options


def cache_dir() -> Path:
    """Where user variants are generated: ``$ADAMGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/adamgen`` or ``~/.cache/adamgen``."""
    if "ADAMGEN_CACHE_DIR" in os.environ:
        return Path(os.environ["ADAMGEN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adamgen"


def load(variant, target: str = "cpu", **options) -> ModuleType:
    """The generated module for ``variant`` on ``target`` (``"cpu"`` or ``"cuda"``).

    ``variant`` is a built-in name (``"adamw"``), a path to a spec file (a Python file defining ``spec``), or a ``Spec`` /
    ``Variant`` object. ``options`` are transforms such as ``amsgrad=True`` or ``decoupled_weight_decay=True``.
    Built-ins come from the shipped ``generated/`` folder; anything else is generated into ``cache_dir()`` under the hash
    of its generated source (written atomically, so concurrent processes are safe) and imported from there.
    """
    from .generate import generate
    from .targets import target as find_target

    target = find_target(target).name
    if isinstance(variant, str) and variant in BUILTINS:
        name = with_options(builtin(variant), **options).name
        return importlib.import_module(f"adamgen.generated.{target}.{name}")
    if isinstance(variant, (str, os.PathLike)):
        path = Path(variant)
        checked = with_options(read_spec_file(path), **options)
        command = f"adamgen generate {path.name} --target {target}"
    else:
        checked = with_options(as_variant(variant), **options)
        command = None
    source = generate(checked, target, command)
    return _import_generated(checked, target, source)


def read_spec_file(path: Path) -> Variant:
    """Run a spec file and return its checked ``spec``. Errors in the file surface as ``SpecError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise GenerateError(f"{path}: no such spec file, and not a built-in variant ({', '.join(BUILTINS)})")
    try:
        namespace = runpy.run_path(str(path))
    except AdamgenError:
        raise
    except Exception as error:
        raise SpecError(f"{path}: running the spec file failed: {type(error).__name__}: {error}") from error
    if "spec" not in namespace:
        raise SpecError(f"{path}: a spec file must define a module-level `spec` (an adamgen.spec.Spec)")
    return as_variant(namespace["spec"])


def _import_generated(variant: Variant, target: str, source: str) -> ModuleType:
    from .render import write_if_changed

    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"adamgen_{variant.name}_{target}_{digest}"
    path = cache_dir() / f"{module_name}.py"
    try:
        write_if_changed(path, source)
    except OSError as error:
        raise GenerateError(f"cannot write the generated module to {path}: {error}; set ADAMGEN_CACHE_DIR") from error
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
