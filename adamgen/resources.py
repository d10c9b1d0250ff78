"""Where the templates and the shipped generated kernels live, in a source checkout and in an installed wheel alike.

The repository keeps them at its top level (``templates/``, ``generated/``); the wheel installs them as the packages
``adamgen.templates`` and ``adamgen.generated``."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def templates_dir() -> Path:
    return Path(str(importlib.resources.files("adamgen.templates")))


def generated_dir() -> Path:
    return Path(str(importlib.resources.files("adamgen.generated")))
