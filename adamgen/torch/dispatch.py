"""One optimizer step over the tensors of a param group: tables of addresses, one kernel call per pass per device and
dtype, never a copy of the user's tensors.

Every step reads the tensors afresh from the param group and ``optimizer.state`` (parameters, gradients, state
tensors, step counters), checks all of them, and only then calls any kernel: a bad tensor raises before anything is
written. The checks run column by column (all the gradients, then all the ``exp_avg`` tensors, ...) through ``map``,
so the common case costs a few attribute reads per tensor at C speed; only when a column holds something unusual
(a DTensor, a strided view, a missing state) does each parameter of the call go through the detailed checks, which
name the problem. The step counters (0-d tensors, as torch.optim keeps them) are read and advanced through their
addresses in one compiled loop, not one torch call each.
"""

from __future__ import annotations

import operator

import numba
import numpy as np
import torch

from ..runtime.cpu import _at
from ..runtime.tables import _overlap
from .tensors import Staged, UnsupportedTensorError, blocks_of, check_grad, check_param, check_placed_like, \
    check_state, check_whole, is_dense, local, same_layout, state_dtype_of, state_dtypes

_PLAIN = {torch.Tensor, torch.nn.Parameter}  # tensor types whose memory is their own (a DTensor's is its shard's)
_DTYPE, _SHAPE, _GRAD = (operator.attrgetter(name) for name in ("dtype", "shape", "grad"))
_IS_CPU, _IS_CUDA = operator.attrgetter("is_cpu"), operator.attrgetter("is_cuda")


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


def _rows(counts):
    """For tensors of ``counts[k]`` rows each: the tensor of every row, and the row's index within its tensor."""
    rows = np.repeat(np.arange(len(counts)), counts)
    return rows, np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)


class Counters:
    """The step counters (or one scalar state) of the tensors of a call, read and written in place, one value per row
    of the call's table. ``widths[k]`` (None: 1 each) is how many rows tensor k has (its blocks); the step counter is
    ``shared`` by a tensor's rows (a 0-d tensor), a block's scalar state is its own element of a tensor of
    ``widths[k]`` elements (one element: a 0-d tensor, as torch.optim keeps it; a row or column state, ``unit``
    "row" or "column", has one element per row or column). CPU float32 (or float64) ones go through their addresses;
    anything else (a counter a checkpoint put on a GPU, a float16 one) one at a time."""

    def __init__(self, tensors, name: str, where, widths=None, shared=True, unit="block"):
        self.tensors = tensors
        self.counts = [1] * len(tensors) if widths is None else [int(w) for w in widths]  # rows per tensor
        self.shared = shared
        self._fast = self._addresses()
        if self._fast is None:
            for k, tensor in enumerate(tensors):
                elements = 1 if shared else self.counts[k]
                if not isinstance(tensor, torch.Tensor) or tensor.numel() != elements \
                        or not tensor.dtype.is_floating_point:
                    kind = "a one-element float tensor, as torch.optim keeps it" if elements == 1 else \
                        f"a float tensor of {elements} elements, one per {unit}"
                    raise TypeError(f"{where(k)}: state {name!r} must be {kind}, got {tensor!r}")

    def _addresses(self):
        tensors = self.tensors
        if not set(map(type, tensors)) <= _PLAIN:
            return None
        dtypes = set(map(_DTYPE, tensors))
        if len(dtypes) != 1 or not dtypes <= {torch.float32, torch.float64} or not all(map(_IS_CPU, tensors)):
            return None
        if list(map(torch.Tensor.numel, tensors)) != ([1] * len(tensors) if self.shared else self.counts):
            return None
        addresses = np.fromiter(map(torch.Tensor.data_ptr, tensors), np.int64, len(tensors))
        like = np.empty(0, np.float32 if torch.float32 in dtypes else np.float64)
        if self.counts != [1] * len(tensors):
            rows, within = _rows(self.counts)
            addresses = addresses[rows] + (0 if self.shared else within * like.itemsize)  # or a block's own element
        return addresses, like

    def read(self) -> np.ndarray:
        values = np.empty(sum(self.counts), np.float64)
        if self._fast is not None:
            _load(*self._fast, values)
        elif self.shared:
            values[:] = np.repeat([float(t) for t in self.tensors], self.counts)
        else:
            values[:] = [v for t in self.tensors for v in t.reshape(-1).tolist()]
        return values

    def write(self, values) -> None:
        values = np.asarray(values, np.float64)
        if self._fast is not None:
            _store(*self._fast, values)
            return
        starts = np.cumsum(self.counts) - self.counts
        for tensor, start, count in zip(self.tensors, starts.tolist(), self.counts):
            if self.shared:
                tensor.fill_(float(values[start]))
            else:
                tensor.copy_(torch.from_numpy(values[start:start + count].copy()).reshape(tensor.shape))


class Call:
    """The parameters of one param group on one device with one dtype, and what ``module.step_tables`` needs to step
    them: the address table (row: parameter, gradient, states), the sizes, the step counters and scalar states."""

    def __init__(self, module, device, dtype, where, block_size=None):
        self.module, self.device, self.dtype, self.where = module, device, dtype, where
        self.block_size = block_size  # None: one row per tensor; else each tensor's blocks of that many elements
        self.row_tensor = None  # with blocks: the tensor of each row
        self.states = set(state_dtypes(dtype))  # the dtypes its states may have besides the parameters' own
        # the call's parameters as columns: index in the group, parameter, gradient, state dict (set by ``plan``)
        self.indices, self.params, self.grads, self.entries = [], [], [], []
        self.placed = False  # whether ``plan`` has seen every parameter on the call's device with its dtype
        self.staged = []  # Staged copies, written back after the kernels

    def here(self, row: int) -> str:
        return f"{self.where}, parameter {self.indices[row]}"

    def prepare(self) -> None:
        """Check every tensor and build the tables; raises (naming the parameter) before anything is written."""
        module = self.module
        rows, cols = getattr(module, "ROW_STATES", {}), getattr(module, "COL_STATES", {})  # factored variants
        if (rows or cols) and self.block_size is not None:
            raise UnsupportedTensorError(f"{self.where}: variant {module.VARIANT} reduces along rows and columns of "
                                         "whole tensors; its param groups take no block_size")
        host = ("step", *module.SCALAR_STATES, *rows, *cols)  # values kept on the host, read through Counters
        try:
            columns = [self.params, self.grads] + [list(map(operator.itemgetter(name), self.entries))
                                                   for name in (*module.STATES, *module.INPUTS)]
            counters = {name: list(map(operator.itemgetter(name), self.entries)) for name in host}
        except KeyError:
            columns = None
        if columns is None or not self._plain(columns):
            columns = self._checked_columns()
            counters = {name: [entry[name] for entry in self.entries] for name in host}
        self.dtypes = [column[0].dtype for column in columns]  # one per column: checked above
        count = len(self.params)
        self.addresses = np.empty((count, len(columns)), np.int64)
        for index, column in enumerate(columns):
            self.addresses[:, index] = np.fromiter(map(torch.Tensor.data_ptr, column), np.int64, count)
        self.sizes = np.fromiter(map(torch.Tensor.numel, columns[0]), np.int64, count)
        self.columns = columns  # keeps the staging copies alive while the tables point into them
        widths = None if self.block_size is None else self._split()
        self.steps = Counters(counters.pop("step"), "step", self.here, widths)
        self.scalars = {name: Counters(counters[name], name, self.here, widths, shared=False)
                        for name in module.SCALAR_STATES}
        self.shapes = ()
        if rows or cols:  # the tensors' shapes; row and column states, one value per row (column) of each tensor
            shapes = np.array([module._factored_shape(p.shape) for p in self.params], np.int64).reshape(-1, 4)
            self.shapes = (shapes,)
            for names, unit, sizes in ((rows, "row", shapes[:, 1] * shapes[:, 2]),
                                       (cols, "column", shapes[:, 1] * shapes[:, 3])):
                self.scalars.update((name, Counters(counters[name], name, self.here, sizes, shared=False, unit=unit))
                                    for name in names)

    def _split(self) -> np.ndarray:
        """The table's rows as blocks: tensor k's ``numel // block_size`` blocks of ``block_size`` elements (one,
        empty, for an empty tensor), each a row, so that per-tensor sums and scalar states act per block. Returns the
        number of rows of each tensor."""
        size = self.block_size
        uneven = np.flatnonzero(self.sizes % size)
        if uneven.size:
            row = int(uneven[0])
            raise ValueError(f"{self.here(row)} has {self.sizes[row]} elements, not a multiple of its param group's "
                             f"block_size {size}")
        widths = blocks_of(self.sizes, size)
        rows, within = _rows(widths)
        blocks = np.minimum(self.sizes, size)[rows]
        itemsizes = np.array([dtype.itemsize for dtype in self.dtypes], np.int64)
        self.addresses = self.addresses[rows] + (within * blocks)[:, None] * itemsizes[None, :]
        self.sizes = blocks
        self.row_tensor = rows
        return widths

    def _plain(self, columns) -> bool:
        """Whether every tensor is a plain contiguous strided tensor of the call's dtype and device, shaped like its
        parameter: then the kernels can take them as they are. FSDP1's flat parameters are plain nn.Parameters too
        (marked ``_is_flat_param``): for a variant that reduces over each parameter, the detailed checks refuse them."""
        if not self.module.ELEMENTWISE and any(getattr(p, "_is_flat_param", False) for p in columns[0]):
            return False
        cpu = self.device.type == "cpu"
        kind = _IS_CPU if cpu else _IS_CUDA
        index = self.device.index  # what get_device() says of the call's CUDA tensors (every CPU tensor says -1)
        shapes = list(map(_SHAPE, columns[0]))
        remainders = {2 + self.module.STATES.index(name) for name in self.module.REMAINDERS}
        try:  # a sparse tensor raises for is_contiguous(): the detailed checks name it
            for position, column in enumerate(columns):
                if not set(map(type, column)) <= _PLAIN or not all(map(torch.Tensor.is_contiguous, column)):
                    return False
                if column is columns[0] and self.placed:  # device and dtype: seen by ``plan``
                    continue
                dtypes = set(map(_DTYPE, column))
                allowed = {torch.int16} if position in remainders else {self.dtype} if position < 2 \
                    else {self.dtype} | self.states
                if len(dtypes) != 1 or not dtypes <= allowed \
                        or not all(map(kind, column)) \
                        or not cpu and set(map(torch.Tensor.get_device, column)) != {index} \
                        or list(map(_SHAPE, column)) != shapes:
                    return False
        except RuntimeError:
            return False
        return True

    def _checked_columns(self) -> list:
        """The columns the slow way: each parameter's tensors checked one by one (the first problem raises, naming
        it), DTensors' local shards (gradient and states placed like the parameter; a variant with reductions refused
        on pieces of parameters), and staging copies for tensors that are not dense or not laid out like their
        parameter."""
        module = self.module
        rows = []
        for row, (p, g, entry) in enumerate(zip(self.params, self.grads, self.entries)):
            here = self.here(row)
            check_param(p, here)
            check_grad(p, g, here)
            inputs = [name for name in module.INPUTS if not isinstance(entry.get(name), torch.Tensor)]
            if inputs:
                raise ValueError(f"{here}: the variant's input {inputs[0]!r} is not set: put a tensor shaped like the "
                                 f"parameter at optimizer.state[param][{inputs[0]!r}] before the step")
            missing = [name for name in ("step", *module.STATES, *module.SCALAR_STATES,
                                         *getattr(module, "ROW_STATES", ()), *getattr(module, "COL_STATES", ()))
                       if name not in entry]
            if missing:
                raise ValueError(f"{here}: its state lacks {', '.join(missing)} (was it loaded from another "
                                 "optimizer?)")
            for name in (*module.STATES, *module.INPUTS):
                check_state(p, entry[name], here, name, name in module.REMAINDERS)
                check_placed_like(p, entry[name], here, f"state {name!r}")
            check_placed_like(p, g, here, "gradient", UnsupportedTensorError)
            if not module.ELEMENTWISE:
                check_whole(p, here, module.VARIANT)
            arrays = [local(p), local(g)] + [local(entry[name]) for name in (*module.STATES, *module.INPUTS)]
            tensors = []
            for index, tensor in enumerate(arrays):
                if not is_dense(tensor) or index and not same_layout(tensor, arrays[0]):
                    staged = Staged(tensor, arrays[0], written=index != 1 and index < 2 + len(module.STATES))
                    self.staged.append(staged)
                    tensor = staged.copy
                tensors.append(tensor)
            rows.append(tensors)
        columns = [list(column) for column in zip(*rows)]
        for name, column in zip((*module.STATES, *module.INPUTS), columns[2:]):
            dtypes = sorted({str(tensor.dtype).replace("torch.", "") for tensor in column})
            if len(dtypes) > 1:
                raise UnsupportedTensorError(f"{self.where}: state {name!r} is {' and '.join(dtypes)} across the "
                                             f"{self.dtype} parameters of one call, which takes one dtype per state; "
                                             "convert them to one")
        return columns

    def extents(self):
        """(starts, stops, written) of every array the call reads or writes, row by row (``name`` names each)."""
        starts = self.addresses.ravel()
        itemsizes = np.array([dtype.itemsize for dtype in self.dtypes], np.int64)
        stops = starts + (self.sizes[:, None] * itemsizes[None, :]).ravel()
        inputs = len(self.module.INPUTS)  # read, like the gradient
        width = self.addresses.shape[1]
        written = np.tile([True, False] + [True] * (width - 2 - inputs) + [False] * inputs, len(self.sizes))
        return starts, stops, written

    def name(self, flat_index: int) -> str:
        row, index = divmod(flat_index, self.addresses.shape[1])
        row = row if self.row_tensor is None else int(self.row_tensor[row])
        return f"{self.here(row)} ({('parameter', 'gradient', *self.module.STATES, *self.module.INPUTS)[index]})"

    def run(self, hyperparameters: dict, advance: bool = True) -> None:
        """Run the kernels over the call's tables; without ``advance`` the step counters are left as they were."""
        extra = {}
        if self.device.type == "cuda":
            extra["stream"] = torch.cuda.current_stream(self.device).cuda_stream
        new_steps, new_scalars = self.module.step_tables(
            self.addresses, self.sizes, self.steps.read(), {name: c.read() for name, c in self.scalars.items()},
            [str(dtype).replace("torch.", "") for dtype in self.dtypes], *self.shapes, **hyperparameters, **extra)
        for staged in self.staged:
            staged.write_back()
        if advance:
            self.steps.write(new_steps)
        for name, values in new_scalars.items():
            self.scalars[name].write(values)


def plan(params, state, modules, where: str, state_dtype=None, block_size=None) -> list[Call]:
    """The calls that step every parameter of ``params`` that has a gradient; ``modules(device_type)`` is the
    generated module for tensors on that device type, ``modules.init_values`` its states' initial values. Creates
    missing state (as torch.optim does, on a parameter's first step; in ``state_dtype`` if given, else in the
    parameter's dtype) and checks every tensor; raises before any kernel runs. ``block_size``: per-tensor sums and
    scalar states act on each tensor's blocks of that many elements (a param group's ``block_size``)."""
    params = list(params)
    grads = list(map(_GRAD, params))
    indices = [k for k, g in enumerate(grads) if g is not None]
    if len(indices) < len(params):
        params, grads = [params[k] for k in indices], [grads[k] for k in indices]
    if not params:
        return []
    # one call per device and dtype; in the common case (every tensor on the CPU, with one dtype) one call
    if all(map(_IS_CPU, params)) and len(set(map(_DTYPE, params))) == 1:
        groups, placed = [None], True
    else:
        keyed: dict = {}
        for row, key in enumerate(zip(map(_IS_CPU, params), map(torch.Tensor.get_device, params),
                                      map(_DTYPE, params))):
            keyed.setdefault(key, []).append(row)
        groups, placed = list(keyed.values()), False
    # a device that no target serves is refused here, before any state is made
    firsts = [0 if rows is None else rows[0] for rows in groups]
    calls = [_new_call(params[r], modules, where, indices[r], block_size) for r in firsts]
    if len(calls) > 1 and calls[0].module.GROUPED:
        kinds = ", ".join(sorted({f"{call.device} {str(call.dtype).replace('torch.', '')}" for call in calls}))
        raise UnsupportedTensorError(f"{where}: variant {calls[0].module.VARIANT} reduces over every tensor of a param "
                                     f"group (clip_grad_norm's global norm), in one call, but this group's tensors "
                                     f"are on several devices or of several dtypes ({kinds}); put each kind in a "
                                     "param group of its own")
    entries = list(map(state.__getitem__, params))  # optimizer.state creates an empty dict for a new parameter
    # A variant with inputs: the user may have set a parameter's inputs before its first step
    first = (lambda e: not e or "step" not in e) if calls[0].module.INPUTS else operator.not_
    if set(map(type, entries)) != {dict} or any(map(first, entries)):
        for row, entry in enumerate(entries):
            if type(entry) is not dict or first(entry):  # a parameter's first step: its state, as torch.optim makes it
                entries[row] = _first_state(params[row], entry, modules, f"{where}, parameter {indices[row]}",
                                            state_dtype, block_size)
    columns = (indices, params, grads, entries)
    for call, rows in zip(calls, groups):
        call.indices, call.params, call.grads, call.entries = columns if rows is None else \
            ([column[r] for r in rows] for column in columns)
        call.placed = placed
    for call in calls:
        call.prepare()
    by_device: dict = {}
    for call in calls:
        by_device.setdefault(call.device, []).append(call)
    for group in by_device.values():  # no array that is written may share memory with any other array
        extents = [call.extents() for call in group]
        starts, stops, written = (np.concatenate(parts) for parts in zip(*extents))
        clash = _overlap(starts, stops, written)
        if clash is not None:
            offsets = np.cumsum([0] + [len(e[0]) for e in extents])

            def name(i):
                c = int(np.searchsorted(offsets, i, "right")) - 1
                return group[c].name(i - offsets[c])
            raise ValueError(f"{name(clash[1])} shares memory with {name(clash[0])}, and one of them is written by the "
                             "step")
    return calls


def _new_call(p, modules, where, k, block_size=None) -> Call:
    check_param(p, f"{where}, parameter {k}")
    module = modules(p.device.type)
    if module is None:
        _unsupported_device(p, modules, f"{where}, parameter {k}")
    if module.REMAINDERS and p.dtype != torch.bfloat16:
        raise UnsupportedTensorError(f"{where}, parameter {k} is {p.dtype}; master_weights keeps bfloat16 parameters "
                                     "(with int16 remainders that make them float32 values)")
    return Call(module, p.device, p.dtype, where, block_size)


def _first_state(p, entry, modules, where, state_dtype, block_size=None) -> dict:
    if not isinstance(entry, dict):
        raise TypeError(f"{where}: optimizer.state holds {type(entry).__name__} for it, not a dict")
    if not entry or "step" not in entry:
        module = modules(p.device.type)
        if module is None:
            _unsupported_device(p, modules, where)
        fresh = _fresh_state(p, module, modules.init_values, state_dtype, block_size)
        entry.update((name, value) for name, value in fresh.items() if name not in entry)  # inputs set before stay
    return entry


def _unsupported_device(p, modules, where):
    raise UnsupportedTensorError(f"{where} is on {p.device}; adamgen's kernels update tensors on "
                                 f"{', '.join(modules.device_types)}")


def _fresh_state(p, module, init_values, state_dtype=None, block_size=None) -> dict:
    """A parameter's state on its first step, in torch.optim's layout: ``step`` a float32 0-d CPU tensor, each state
    tensor like the parameter (same memory format; a DTensor for a DTensor; of ``state_dtype_of``, a remainder int16),
    each scalar state a float64 0-d tensor (with ``block_size``: one element per block)."""
    fresh = {"step": torch.tensor(0.0, dtype=torch.float32)}
    dtype = state_dtype_of(p, module, state_dtype)
    for name in module.STATES:
        if init_values[name] == "param":  # a copy of the parameter, in its dtype
            fresh[name] = p.detach().clone(memory_format=torch.preserve_format)
            continue
        fresh[name] = torch.full_like(p, init_values[name], dtype=torch.int16 if name in module.REMAINDERS else dtype,
                                      memory_format=torch.preserve_format)
    for name, value in module.SCALAR_STATES.items():
        fresh[name] = torch.tensor(float(value), dtype=torch.float64) if block_size is None else \
            torch.full((int(blocks_of(p.numel(), block_size)),), float(value), dtype=torch.float64)
    for name, value in getattr(module, "ROW_STATES", {}).items():  # factored variants: float64 host tensors
        fresh[name] = torch.full(module._row_shape(tuple(p.shape)), float(value), dtype=torch.float64)
    for name, value in getattr(module, "COL_STATES", {}).items():
        fresh[name] = torch.full(module._col_shape(tuple(p.shape)), float(value), dtype=torch.float64)
    return fresh
