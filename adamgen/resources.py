"""Where the templates and the shipped generated kernels live, in a source checkout and in an installed wheel alike.

The repository keeps them at its top level (``templates/``, ``generated/``); the wheel and an editable install make them
the packages ``adamgen.templates`` and ``adamgen.generated``. A checkout used with no install at all (``PYTHONPATH=.``)
gets the same packages from ``mount_checkout_folders``, which ``adamgen`` runs on import."""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def mount_checkout_folders() -> None:
    """Make the checkout's ``generated/`` and ``templates/`` the packages ``adamgen.generated`` and ``adamgen.templates``
    where no install provides them."""
    for folder in ("generated", "templates"):
        name = f"adamgen.{folder}"
        init = _CHECKOUT / folder / "__init__.py"
        if name in sys.modules or not init.is_file() or importlib.util.find_spec(name) is not None:
            continue
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(sys.modules["adamgen"], folder, module)  # as the import system binds a subpackage to its parent


def templates_dir() -> Path:
    return Path(str(importlib.resources.files("adamgen.templates")))


def generated_dir() -> Path:
    return Path(str(importlib.resources.files("adamgen.generated")))
