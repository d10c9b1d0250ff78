"""Code generation targets. Each ``Target`` owns what the generator and the runtimes need to know about one kind of
kernel: its element printer, its template, its tuning constants, the names its generated code takes for itself and the
torch device types it serves. Code elsewhere asks the target instead of comparing target names."""

from __future__ import annotations

import dataclasses

from ..errors import GenerateError


@dataclasses.dataclass(frozen=True)
class Target:
    """One code generation target.

    name:          what users write (``adamgen.load(..., target=name)``); also the folder of its generated modules.
    template:      the Jinja2 template of its modules (``templates/<template>``).
    printer:       the element printer class (``adamgen.printing``) for its kernels' per-element code.
    constants:     tuning constants written into every module (``NAME = value``), with a comment each.
    runtime:       the ``adamgen/runtime`` modules its template inlines, in order.
    device_types:  the torch device types whose tensors it updates.
    reserved:      names its generated code uses besides the shared ones (``SHARED_RESERVED``).
    tile:          elements per tile of the kernels with row and column sums.
    """

    name: str
    template: str
    printer: type
    constants: tuple[tuple[str, int, str], ...]
    runtime: tuple[str, ...]
    device_types: tuple[str, ...]
    reserved: frozenset = frozenset()
    tile: int = 1 << 15

    def __str__(self) -> str:
        return self.name


# Names every generated module uses for itself, so spec names may not take them (adamgen.spec.reserved): its imports,
# metadata and functions, and the locals of the host functions of templates/base.py.j2 (step, step_many, step_tables).
SHARED_RESERVED = frozenset({
    "math", "np", "numba",
    "VARIANT", "TARGET", "STATES", "REMAINDERS", "STATE_INIT", "SCALAR_STATES", "HYPERPARAMETERS", "REFERENCE", "SPEC_HASH",
    "REDUCE_PHASES", "ELEMENTWISE", "GROUPED", "init", "step", "init_many", "step_many", "step_tables",
    "param", "grad", "state", "params", "grads", "states", "steps", "scalar_states", "sizes", "addresses", "chunks",
    "partials", "scalars", "flags", "dtype", "count", "numel", "unknown", "rows", "row", "arrays", "k", "name", "values",
    "stream", "maximize", "grad_sign", "formats", "storage", "state_dtype",
    "ROW_STATES", "COL_STATES", "TILE", "checked", "vectors", "shapes", "new", "sized", "hyperparameters", "function",
    "array", "at", "INPUTS", "inputs",
})


from .cpu import CPU  # noqa: E402  (the targets are Target objects, defined above)
from .cuda import CUDA  # noqa: E402

TARGETS: dict[str, Target] = {t.name: t for t in (CPU, CUDA)}


def targets() -> dict[str, Target]:
    """Every target by name."""
    return TARGETS


def reserved_names() -> frozenset:
    """Every name that some target's generated code uses for itself."""
    return SHARED_RESERVED.union(*(t.reserved for t in TARGETS.values()))


def target(name) -> Target:
    """The target called ``name`` (a ``Target`` is returned as it is); a GenerateError lists the targets otherwise."""
    if isinstance(name, Target):
        return name
    known = targets()
    if name not in known:
        raise GenerateError(f"unknown target {name!r}; targets: {', '.join(known)}")
    return known[name]


def for_device(device_type: str) -> Target | None:
    """The target whose kernels update tensors on torch devices of ``device_type``, or None."""
    return next((t for t in targets().values() if device_type in t.device_types), None)
