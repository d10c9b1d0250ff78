"""One file per built-in variant, named as in ``adamgen.variants.BUILTINS`` (``adam.py``, ``lion.py``, ...), each
declaring ``VARIANT = VariantTests(...)``: its references (a torch.optim twin, NumPy transcriptions of the paper,
reference packages), the options and hyperparameters each is run with and the tolerance per dtype; see ``_schema.py``.

The files are found here (files whose names start with ``_`` hold shared code), and the test modules are parametrised
from ``CASES``: adding a built-in means adding its file, and test_variant_files.py fails for a built-in without one.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from ._schema import (DECAY, DECOUPLE_LR_DECAY, REFERENCE_STEPS, VS_REFERENCE, VS_TORCH, Case, Tolerance, TorchOptim,
                      VariantTests)
from ._references import NumpyReference, TorchReference

__all__ = ["Case", "DECAY", "DECOUPLE_LR_DECAY", "FILES", "CASES", "NumpyReference", "REFERENCE_STEPS", "Tolerance",
           "TorchOptim", "TorchReference", "TWINS", "VariantTests", "VS_REFERENCE", "VS_TORCH", "case", "params"]


def _discover() -> dict[str, VariantTests]:
    """Every variant file in this folder: file name -> its ``VARIANT``, in the order of adamgen's BUILTINS (files that
    name no built-in last, for test_variant_files.py to report)."""
    from adamgen.variants import BUILTINS

    names = [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
    order = {name: k for k, name in enumerate(BUILTINS)}
    names.sort(key=lambda name: (order.get(name, len(order)), name))
    return {name: importlib.import_module(f"{__name__}.{name}").VARIANT for name in names}


FILES = _discover()
CASES: tuple[Case, ...] = tuple(case for tests in FILES.values() for case in tests.cases)
TWINS: tuple[Case, ...] = tuple(case for case in CASES if case.twin)  # the cases against a torch.optim class


def case(case_id: str) -> Case:
    """The case with this id."""
    [found] = [c for c in CASES if c.id == case_id]
    return found


def params(cases) -> list:
    """``cases`` as pytest parameters, with their ids, marked ``torch`` where the reference needs torch."""
    return [pytest.param(c, id=c.id, marks=[pytest.mark.torch] if c.uses_torch else []) for c in cases]
