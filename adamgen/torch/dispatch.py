"""One optimizer step over the tensors of a param group: tables of addresses, one kernel call per pass per device and
dtype, never a copy of the user's tensors.

Every step reads the tensors afresh from the param group and ``optimizer.state`` (parameters, gradients, state
tensors, step counters), checks all of them, and only then calls any kernel: a bad tensor raises before anything is
written. The step counters (0-d tensors, as torch.optim keeps them) are read and advanced through their addresses in
one compiled loop, not one torch call each.
"""

from __future__ import annotations

import dataclasses
import operator

import numba
import numpy as np
import torch

from ..runtime.cpu import _at
from ..runtime.tables import _overlap
from .tensors import Staged, UnsupportedTensorError, check_grad, check_param, check_placed_like, check_state, \
    check_whole, is_dense, local, same_layout


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


_DTYPE = operator.attrgetter("dtype")
_IS_CPU = operator.attrgetter("is_cpu")


class Counters:
    """The step counters (or one scalar state) of the tensors of a call: 0-d tensors, read and written in place.

    CPU float32/float64 0-d tensors go through their addresses; anything else (a counter a checkpoint put on a GPU,
    a float16 one) one at a time."""

    def __init__(self):
        self.tensors = []

    def add(self, tensor, where: str, k: int, name: str) -> None:
        if type(tensor) is not torch.Tensor and not (
                isinstance(tensor, torch.Tensor) and tensor.numel() == 1 and tensor.dtype.is_floating_point):
            raise TypeError(f"{where}, parameter {k}: state {name!r} must be a one-element float tensor, as "
                            f"torch.optim keeps it, got {tensor!r}")
        self.tensors.append(tensor)

    def _fast(self):
        """(addresses, an empty array of their dtype) when every counter is a CPU float32 (or every one a CPU float64)
        one-element tensor, else None."""
        tensors = self.tensors
        dtypes = set(map(_DTYPE, tensors))
        if len(dtypes) == 1 and dtypes <= {torch.float32, torch.float64} and all(map(_IS_CPU, tensors)) \
                and all(n == 1 for n in map(torch.Tensor.numel, tensors)):
            addresses = np.fromiter(map(torch.Tensor.data_ptr, tensors), np.int64, len(tensors))
            return addresses, np.empty(0, np.float32 if torch.float32 in dtypes else np.float64)
        for tensor in tensors:  # the slow path checks what the fast one did not
            if tensor.numel() != 1 or not tensor.dtype.is_floating_point:
                raise TypeError(f"a step counter or scalar state must be a one-element float tensor, got {tensor!r}")
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
    addresses: list = dataclasses.field(default_factory=list)    # per tensor: its arrays' addresses, in kernel order
    sizes: list = dataclasses.field(default_factory=list)
    steps: Counters = dataclasses.field(default_factory=Counters)
    scalars: dict = dataclasses.field(default_factory=dict)      # scalar state -> Counters
    staged: list = dataclasses.field(default_factory=list)       # Staged copies to write back after the kernels
    reduces: bool = False                                        # the variant reduces over each tensor

    def run(self, hyperparameters: dict) -> None:
        width = 2 + len(self.module.STATES)
        addresses = np.array(self.addresses, np.int64).reshape(len(self.sizes), width)
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


_PLAIN = (torch.Tensor, torch.nn.Parameter)  # tensor types whose memory is their own (a DTensor's is its shard's)


def plan(params, state, modules, where: str) -> list[Call]:
    """The calls that step every parameter of ``params`` that has a gradient; ``modules(device_type)`` is the
    generated module for tensors on that device type, ``modules.init_values`` its states' initial values. Creates
    missing state (as torch.optim does, on a parameter's first step) and checks every tensor; raises before any kernel
    runs. The common case (plain contiguous tensors) costs a few attribute reads per tensor."""
    calls: dict = {}
    extents: dict = {}  # device -> (starts, stops, written, (parameter index, array index) of each)
    for k, p in enumerate(params):
        g = p.grad
        if g is None:
            continue
        key = (p.device, p.dtype)
        call = calls.get(key)
        if call is None:
            call = calls[key] = _new_call(p, modules, f"{where}, parameter {k}")
        module = call.module
        entry = state[p]
        if not entry or type(entry) is not dict:
            entry = _first_state(p, entry, module, modules, f"{where}, parameter {k}")
        shape = p.shape
        if g.dtype is not call.dtype or g.shape != shape or g.device != call.device or g.layout is not torch.strided \
                or p.layout is not torch.strided:
            check_param(p, f"{where}, parameter {k}")
            check_grad(p, g, f"{where}, parameter {k}")
        try:
            row = [p, g] + [entry[name] for name in module.STATES]
            counters = [entry["step"]] + [entry[name] for name in call.scalars]
        except KeyError:
            row = None
        # FSDP1's flat parameters are nn.Parameters too (marked _is_flat_param): the slow path refuses them to a
        # variant that reduces over each parameter
        plain = row is not None and type(p) in _PLAIN and not (call.reduces and getattr(p, "_is_flat_param", False))
        if plain:
            for value in row[2:]:
                if type(value) not in _PLAIN or value.dtype is not call.dtype or value.shape != shape \
                        or value.device != call.device:
                    plain = False
                    break
            else:
                plain = all([t.is_contiguous() for t in row])
        if not plain:
            row = _checked_row(p, g, entry, module, call, f"{where}, parameter {k}")
            counters = [entry["step"]] + [entry[name] for name in call.scalars]
        starts, stops, written, owners = extents.setdefault(call.device, ([], [], [], []))
        size = row[0].numel()
        nbytes = size * row[0].element_size()
        for index, tensor in enumerate(row):
            start = tensor.data_ptr()
            call.addresses.append(start)
            starts.append(start)
            stops.append(start + nbytes)
            owners.append((k, index))
        written += [True, False] + [True] * (len(row) - 2)
        call.sizes.append(size)
        call.steps.add(counters[0], where, k, "step")
        for (name, scalar), value in zip(call.scalars.items(), counters[1:]):
            scalar.add(value, where, k, name)
    for starts, stops, written, owners in extents.values():
        clash = _overlap(starts, stops, written)
        if clash is not None:
            (ka, ia), (kb, ib) = owners[clash[0]], owners[clash[1]]
            states = next(iter(calls.values())).module.STATES

            def what(k, index):
                return f"{where}, parameter {k} ({('parameter', 'gradient', *states)[index]})"
            raise ValueError(f"{what(kb, ib)} shares memory with {what(ka, ia)}, and one of them is written by the "
                             "step")
    return list(calls.values())


def _new_call(p, modules, where) -> Call:
    check_param(p, where)
    module = modules(p.device.type)
    if module is None:
        raise UnsupportedTensorError(f"{where} is on {p.device}; adamgen's kernels update tensors on "
                                     f"{', '.join(modules.device_types)}")
    call = Call(module, p.device, p.dtype, reduces=not module.ELEMENTWISE)
    call.scalars = {name: Counters() for name in module.SCALAR_STATES}
    return call


def _first_state(p, entry, module, modules, where) -> dict:
    if not isinstance(entry, dict):
        raise TypeError(f"{where}: optimizer.state holds {type(entry).__name__} for it, not a dict")
    if not entry:
        entry.update(_fresh_state(p, module, modules.init_values))
    return entry


def _checked_row(p, g, entry, module, call, where) -> list:
    """The kernel arrays of one parameter, the slow way: every state checked, DTensors' local shards (gradient and
    states placed like the parameter; variants with reductions refused on pieces of parameters), and staging copies
    for tensors that are not dense or not laid out like their parameter."""
    missing = [name for name in ("step", *module.STATES, *module.SCALAR_STATES) if name not in entry]
    if missing:
        raise ValueError(f"{where}: its state lacks {', '.join(missing)} (was it loaded from another optimizer?)")
    for name in module.STATES:
        check_state(p, entry[name], where, name)
        check_placed_like(p, entry[name], where, f"state {name!r}")
    check_placed_like(p, g, where, "gradient", UnsupportedTensorError)
    if not module.ELEMENTWISE:
        check_whole(p, where, module.VARIANT)
    arrays = [local(p), local(g)] + [local(entry[name]) for name in module.STATES]
    row = []
    for index, tensor in enumerate(arrays):
        if not is_dense(tensor) or index and not same_layout(tensor, arrays[0]):
            staged = Staged(tensor, arrays[0], written=index != 1)
            call.staged.append(staged)
            tensor = staged.copy
        row.append(tensor)
    return row


def _fresh_state(p, module, init_values) -> dict:
    """A parameter's state on its first step, in torch.optim's layout: ``step`` a float32 0-d CPU tensor, each state
    tensor like the parameter (same memory format; a DTensor for a DTensor), each scalar state a float64 0-d tensor."""
    fresh = {"step": torch.tensor(0.0, dtype=torch.float32)}
    for name in module.STATES:
        fresh[name] = torch.full_like(p, init_values[name], memory_format=torch.preserve_format)
    for name, value in module.SCALAR_STATES.items():
        fresh[name] = torch.tensor(float(value), dtype=torch.float64)
    return fresh
