"""One optimizer step over the tensors of a param group: tables of addresses, one kernel call per pass per device and
dtype, never a copy of the user's tensors.

Every step reads the tensors afresh from the param group and ``optimizer.state`` (parameters, gradients, state
tensors, step counters), checks all of them, and only then calls any kernel: a bad tensor raises before anything is
written. The step counters (0-d tensors, as torch.optim keeps them) are read and advanced through their addresses in
one compiled loop, not one torch call each.
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import torch

from ..runtime.cpu import _at
from ..runtime.tables import _overlap
from .tensors import Staged, UnsupportedTensorError, check_grad, check_param, check_state, is_dense, local, \
    same_layout


@numba.njit
def _load(addresses, like, values):
    """``values[k]`` = the number of ``like``'s dtype at ``addresses[k]``."""
    for k in range(addresses.shape[0]):
        values[k] = _at(addresses[k], 1, like.dtype)[0]


@numba.njit
def _store(addresses, like, values):
    """The number of ``like``'s dtype at ``addresses[k]`` = ``values[k]``."""
    for k in range(addresses.shape[0]):
        _at(addresses[k], 1, like.dtype)[0] = values[k]


class Counters:
    """The step counters (or one scalar state) of the tensors of a call: 0-d tensors, read and written in place.

    CPU float32/float64 0-d tensors go through their addresses; anything else (a counter a checkpoint put on a GPU,
    a float16 one) one at a time."""

    def __init__(self):
        self.tensors = []

    def add(self, tensor, where: str, name: str) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.numel() != 1 or not tensor.dtype.is_floating_point:
            raise TypeError(f"{where}: state {name!r} must be a one-element float tensor, as torch.optim keeps it, "
                            f"got {tensor!r}")
        self.tensors.append(tensor)

    def _fast(self):
        dtypes = {t.dtype for t in self.tensors}
        if len(dtypes) == 1 and dtypes <= {torch.float32, torch.float64} and all(
                t.device.type == "cpu" for t in self.tensors):
            addresses = np.fromiter((t.data_ptr() for t in self.tensors), np.int64, len(self.tensors))
            return addresses, np.empty(0, np.float32 if torch.float32 in dtypes else np.float64)
        return None

    def read(self) -> np.ndarray:
        values = np.empty(len(self.tensors), np.float64)
        fast = self._fast()
        if fast is not None:
            _load(*fast, values)
        else:
            values[:] = [float(t) for t in self.tensors]
        return values

    def write(self, values) -> None:
        fast = self._fast()
        if fast is not None:
            _store(*fast, np.asarray(values, np.float64))
        else:
            for tensor, value in zip(self.tensors, np.asarray(values, np.float64).tolist()):
                tensor.fill_(value)


@dataclasses.dataclass
class Call:
    """The tensors of one param group on one device with one dtype, and what ``module.step_tables`` needs for them."""

    module: object
    device: torch.device
    dtype: torch.dtype
    rows: list = dataclasses.field(default_factory=list)         # per tensor: its kernel arrays, in kernel order
    sizes: list = dataclasses.field(default_factory=list)
    steps: Counters = dataclasses.field(default_factory=Counters)
    scalars: dict = dataclasses.field(default_factory=dict)      # scalar state -> Counters
    staged: list = dataclasses.field(default_factory=list)       # Staged copies to write back after the kernels
    keep: list = dataclasses.field(default_factory=list)         # tensors whose memory the tables point into

    def run(self, hyperparameters: dict) -> None:
        addresses = np.array([[t.data_ptr() for t in row] for row in self.rows], np.int64).reshape(len(self.rows), -1)
        steps = self.steps.read()
        scalars = {name: counters.read() for name, counters in self.scalars.items()}
        extra = {}
        if self.device.type == "cuda":
            extra["stream"] = torch.cuda.current_stream(self.device).cuda_stream
        new_steps, new_scalars = self.module.step_tables(
            addresses, np.array(self.sizes, np.int64), steps, scalars,
            np.float32 if self.dtype == torch.float32 else np.float64, **hyperparameters, **extra)
        for staged in self.staged:
            staged.write_back()
        self.steps.write(new_steps)
        for name, values in new_scalars.items():
            self.scalars[name].write(values)


def plan(params, state, modules, where: str) -> list[Call]:
    """The calls that step every parameter of ``params`` that has a gradient; ``modules(device_type)`` is the
    generated module for tensors on that device type, ``modules.init_values`` its states' initial values. Creates missing state (as torch.optim does, on a parameter's first step) and checks
    every tensor; raises before any kernel runs."""
    calls: dict = {}
    extents = {}  # device -> (starts, stops, written, names)
    for k, p in enumerate(params):
        g = p.grad
        if g is None:
            continue
        here = f"{where}, parameter {k}"
        check_param(p, here)
        check_grad(p, g, here)
        module = modules(p.device.type)
        if module is None:
            raise UnsupportedTensorError(f"{here} is on {p.device}; adamgen's kernels update tensors on "
                                         f"{', '.join(modules.device_types)}")
        entry = state[p]
        if not isinstance(entry, dict):
            raise TypeError(f"{here}: optimizer.state holds {type(entry).__name__} for it, not a dict")
        if not entry:
            entry.update(_fresh_state(p, module, modules.init_values))
        missing = [name for name in ("step", *module.STATES, *module.SCALAR_STATES) if name not in entry]
        if missing:
            raise ValueError(f"{here}: its state lacks {', '.join(missing)} (was it loaded from another optimizer?)")
        for name in module.STATES:
            check_state(p, entry[name], here, name)
        key = (module, p.device, p.dtype)
        call = calls.get(key)
        if call is None:
            call = calls[key] = Call(module, p.device, p.dtype)
            call.scalars = {name: Counters() for name in module.SCALAR_STATES}
        p_local, g_local = local(p), local(g)
        arrays = [p_local, g_local] + [local(entry[name]) for name in module.STATES]
        row = []
        for index, tensor in enumerate(arrays):
            if index and not (is_dense(tensor) and same_layout(tensor, arrays[0])) or not is_dense(tensor):
                staged = Staged(tensor, arrays[0], written=index != 1)
                call.staged.append(staged)
                tensor = staged.copy
            row.append(tensor)
        starts, stops, written, names = extents.setdefault(p_local.device, ([], [], [], []))
        for index, tensor in enumerate(row):
            start = tensor.data_ptr()
            starts.append(start)
            stops.append(start + tensor.numel() * tensor.element_size())
            written.append(index != 1)
            names.append(f"{here} ({module.STATES[index - 2] if index > 1 else ('parameter', 'gradient')[index]})")
        call.rows.append(row)
        call.sizes.append(p_local.numel())
        call.steps.add(entry["step"], here, "step")
        for name, counters in call.scalars.items():
            counters.add(entry[name], here, name)
    for starts, stops, written, names in extents.values():
        clash = _overlap(starts, stops, written)
        if clash is not None:
            a, b = clash
            raise ValueError(f"{names[b]} shares memory with {names[a]}, and one of them is written by the step")
    return list(calls.values())


def _fresh_state(p, module, init_values) -> dict:
    """A parameter's state on its first step, in torch.optim's layout: ``step`` a float32 0-d CPU tensor, each state
    tensor like the parameter (same memory format; a DTensor for a DTensor), each scalar state a float64 0-d tensor."""
    fresh = {"step": torch.tensor(0.0, dtype=torch.float32)}
    for name in module.STATES:
        fresh[name] = torch.full_like(p, init_values[name], memory_format=torch.preserve_format)
    for name, value in module.SCALAR_STATES.items():
        fresh[name] = torch.tensor(float(value), dtype=torch.float64)
    return fresh
