"""CPU kernels' host side: checking NumPy arrays, and reading arrays at addresses inside a kernel.

Many-tensor kernels get the addresses of their arrays in an int64 table; ``_at`` turns one back into an array inside
the kernel (numba has no cast from an integer to a pointer, so ``_pointer`` is a one-instruction intrinsic). Addresses
only come from arrays checked here (or by ``adamgen.torch``), never from anywhere else.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types as _types
from numba.core.extending import intrinsic as _intrinsic

from .storage import _checked_formats, _filled, _format, _kernel_view, _state_format
from .tables import _given_inputs, _overlap, _scalar_state, _step_count

VARIANT = "runtime"  # the generated module's own constants replace these stand-ins
STATES: tuple = ()
INPUTS: tuple = ()
SCALAR_STATES: dict = {}

# --- inlined into generated modules from here on ---

@_intrinsic
def _pointer(typingctx, address, kind):
    """The int64 ``address`` as a pointer to elements of ``kind``'s type (LLVM's inttoptr); ``kind`` is a scalar of
    that type (its value is unused) or a dtype."""
    pointer = _types.CPointer(kind.dtype if isinstance(kind, _types.DType) else kind)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, kind), codegen


@numba.njit(inline="always", cache=True)
def _at(address, count, kind):
    """The ``count`` elements of ``kind``'s type (a scalar of it, or a dtype) from ``address`` on, as a 1-D array (no
    copy)."""
    return numba.carray(_pointer(address, kind), count)


@numba.njit(inline="always", error_model="numpy", cache=True)
def _maximum(a, b):
    """The larger of ``a`` and ``b``, NaN if either is NaN, as torch.maximum and NumPy's maximum (numba's ``max``
    returns ``a`` when ``b`` is NaN). A select, so loops calling it vectorize."""
    return a if a > b or a != a else b


@numba.njit(inline="always", error_model="numpy", cache=True)
def _minimum(a, b):
    """The smaller of ``a`` and ``b``, NaN if either is NaN."""
    return a if a < b or a != a else b


def _address(array):
    return array.ctypes.data


def _not_stored(name, array):
    """A TypeError if ``array`` is not a numpy array of a storage format, else None."""
    if not isinstance(array, np.ndarray) or _format(array.dtype) is None:
        return TypeError(f"{name} must be a numpy array of float64, float32, float16 or bfloat16 (int16 bits), got "
                         f"{type(array).__name__} {getattr(array, 'dtype', '')}".rstrip())
    return None


def _array_problem(name, array, shape, written):
    """What is wrong with ``array`` as the kernel's ``name`` array, or None (how its format goes with the others' is
    checked apart)."""
    problem = _not_stored(name, array)
    if problem is not None:
        return problem
    if array.shape != shape:
        return ValueError(f"{name} has shape {array.shape}, param has shape {shape}")
    if not array.flags.c_contiguous:
        return ValueError(f"{name} must be C-contiguous")
    if written and not array.flags.writeable:
        return ValueError(f"{name} is read-only")
    return None


def _checked_arrays(function, params, grads, states, tables, inputs=None):
    """The kernel's arrays for each tensor (``[param, grad, *states]``, each 1-D, as ``_kernel_view`` shows them) and
    their storage formats, after checking every array of every tensor: numpy arrays of a storage format, formats that
    go together (``_formats_problem``) and are the same for every tensor, each tensor's arrays of one shape,
    C-contiguous, the written ones writeable, and no written array sharing memory with any other. With ``tables``, also
    their int64 address table (row ``j``: tensor ``j``'s arrays in kernel order). ``inputs``: the arrays given for the
    variant's inputs, {name: one per tensor}, read like the gradient. Raises TypeError or ValueError naming the first
    problem, before anything is written."""
    given = _given_inputs(function, inputs, len(params))
    rows, named = [], []
    formats = None
    many = function.endswith("_many")
    for k, (param, grad, state) in enumerate(zip(params, grads, states)):
        where, state_name = (f"params[{k}]", f"states[{k}]") if many else ("param", "state")
        problem = _not_stored(where, param)  # first: the others' shapes are compared with the parameter's
        if problem is not None:
            raise TypeError(f"{VARIANT}.{function}: {problem}")
        if not isinstance(state, dict):
            raise TypeError(f"{VARIANT}.{function}: {state_name} must be the dict that init returns, got "
                            f"{type(state).__name__}")
        missing = [name for name in ("step",) + STATES + tuple(SCALAR_STATES) if name not in state]
        if missing:
            raise ValueError(f"{VARIANT}.{function}: {state_name} lacks {', '.join(missing)}; create it with "
                             f"{VARIANT}.init")
        _step_count(function, state_name, state["step"])
        for name in SCALAR_STATES:
            _scalar_state(function, state_name, name, state[name])
        row = [(where, param, True), (where.replace("param", "grad"), grad, False)]
        row += [(f"{state_name}[{name!r}]", state[name], True) for name in STATES]
        row += [(f"{name}[{k}]" if many else name, given[name][k], False) for name in INPUTS]
        for name, array, written in row:
            problem = _array_problem(name, array, param.shape, written)
            if problem is not None:
                raise type(problem)(f"{VARIANT}.{function}: {problem}")
        names = [name for name, _, _ in row]
        formats = _checked_formats(function, where, names, [array.dtype for _, array, _ in row], formats)
        named += row
        rows.append([_kernel_view(array.reshape(-1)) for _, array, _ in row])
    if not tables:
        for b, (name, array, written) in enumerate(named):
            for a in range(b):
                if (written or named[a][2]) and np.may_share_memory(named[a][1], array):
                    _overlapping(function, named[a][0], name)
        return rows, None, formats
    starts = [_address(array) for _, array, _ in named]
    stops = [start + array.nbytes for start, (_, array, _) in zip(starts, named)]
    clash = _overlap(starts, stops, [written for _, _, written in named])
    if clash is not None:
        _overlapping(function, named[clash[0]][0], named[clash[1]][0])
    return rows, np.array(starts, np.int64).reshape(len(rows), 2 + len(STATES) + len(INPUTS)), formats


def _full(function, param, value, state_dtype, remainder=False):
    """A new state array shaped like ``param``, filled with ``value``, in the format ``_state_format`` gives."""
    problem = _not_stored("param", param)
    if problem is not None:
        raise TypeError(f"{VARIANT}.{function}: {problem}")
    return _filled(param.shape, value, _state_format(function, _format(param.dtype), state_dtype, remainder))


def _copied(function, param):
    """A new state array holding a copy of ``param`` (its format: the values exactly), C-contiguous."""
    problem = _not_stored("param", param)
    if problem is not None:
        raise TypeError(f"{VARIANT}.{function}: {problem}")
    return np.array(param, order="C")


def _overlapping(function, first, second):
    raise ValueError(f"{VARIANT}.{function}: {second} overlaps {first} in memory, and one of them is written")
