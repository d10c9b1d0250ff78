"""CUDA kernels' host side: checking device arrays, launch sizes, streams, tables on the device, and reading arrays at
addresses inside a kernel.

Device arrays are anything with ``__cuda_array_interface__`` (torch CUDA tensors, CuPy arrays) or numba device arrays;
they are used in place, never copied. torch is never imported: a caller that passes torch tensors has imported it.
Many-tensor kernels get their arrays' device addresses in an int64 table; ``_view`` turns one back into something a
kernel indexes (a typed pointer; under numba's CUDA simulator, where device memory is host memory, a NumPy view).
"""

from __future__ import annotations

import ctypes
import sys

import numba
import numpy as np
from numba import cuda
from numba.cuda import types as _types
from numba.cuda.extending import intrinsic as _intrinsic

from .storage import _NUMPY_DTYPES, _checked_formats, _fill_value, _filled, _format, _kernel_view, _state_format
from .tables import _given_inputs, _overlap, _scalar_state, _step_count

VARIANT = "runtime"  # the generated module's own constants replace these stand-ins
STATES: tuple = ()
INPUTS: tuple = ()
SCALAR_STATES: dict = {}
THREADS_PER_BLOCK = 256

# --- inlined into generated modules from here on ---

# At most this many blocks per launch; None: as many as the device keeps resident at once (multiprocessors x resident
# threads per multiprocessor / THREADS_PER_BLOCK), which the kernels' loops over chunks cover any size with.
MAX_BLOCKS = None

if numba.config.ENABLE_CUDASIM:
    def _view(address, count, kind):
        """The ``count`` elements of ``kind``'s type (a NumPy scalar) at ``address`` (the simulator's device memory is
        host memory)."""
        element = np.ctypeslib.as_ctypes_type(np.dtype(type(kind)))
        return np.ctypeslib.as_array(ctypes.cast(int(address), ctypes.POINTER(element)), (int(count),))
else:
    @_intrinsic
    def _view(typingctx, address, count, kind):
        """The int64 ``address`` as a pointer to elements of ``kind``'s type (a scalar of it; its value is unused)
        (LLVM's inttoptr); indexing it reads and writes device memory. ``count`` is unused on the device."""
        pointer = _types.CPointer(kind)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(pointer))

        return pointer(address, count, kind), codegen



@cuda.jit(device=True, inline="always", cache=True)
def _maximum(a, b):
    """The larger of ``a`` and ``b``, NaN if either is NaN, as torch.maximum (and the CPU kernels)."""
    return a if a > b or a != a else b


@cuda.jit(device=True, inline="always", cache=True)
def _minimum(a, b):
    """The smaller of ``a`` and ``b``, NaN if either is NaN."""
    return a if a < b or a != a else b


_resident = {}  # device id -> blocks resident at once


def _blocks(chunks):
    """Blocks for a launch over ``chunks`` chunks: one per chunk, at most one resident wave on the current device."""
    limit = MAX_BLOCKS
    if limit is None:
        device = cuda.get_current_device()
        key = getattr(device, "id", 0)
        if key not in _resident:
            # The CUDA simulator's device reports neither attribute: count it as one multiprocessor.
            threads = getattr(device, "MAX_THREADS_PER_MULTIPROCESSOR", THREADS_PER_BLOCK)
            _resident[key] = getattr(device, "MULTIPROCESSOR_COUNT", 1) * max(1, threads // THREADS_PER_BLOCK)
        limit = _resident[key]
    return max(1, min(limit, chunks))


def _torch(array):
    """The torch module if ``array`` is a torch tensor, else None."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(array, torch.Tensor) else None


def _not_cuda(function, what, array):
    return TypeError(f"{VARIANT}.{function}: {what} must be a CUDA array (a numba device array, a torch CUDA tensor or "
                     f"any object with __cuda_array_interface__), got {type(array).__name__} on the host; use the cpu "
                     "target, adamgen.load(..., target='cpu'), for host arrays")


def _device_array(function, what, array):
    """A numba device array viewing ``array``'s memory (no copy), or a TypeError if it is not in CUDA memory. A torch
    bfloat16 tensor, which exports no __cuda_array_interface__, is viewed as its int16 bits."""
    if cuda.devicearray.is_cuda_ndarray(array):
        return array
    torch = _torch(array)
    if torch is not None:
        if not array.is_cuda:
            raise _not_cuda(function, what, array)
        array = array.detach()  # a tensor that requires grad exports no __cuda_array_interface__
        if array.dtype == torch.bfloat16:
            array = array.view(torch.int16)
    elif not hasattr(array, "__cuda_array_interface__"):
        raise _not_cuda(function, what, array)
    return cuda.as_cuda_array(array)


def _address(array):
    """The device address of a numba device array's first element (a host address under the simulator)."""
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is None:  # the CUDA simulator, whose device arrays are host arrays
        interface = np.asarray(array).__array_interface__
    return interface["data"][0], interface["data"][1]


def _exported_read_only(array):
    """Whether the exporter of ``array``'s __cuda_array_interface__ marks its memory read-only, which numba's view of
    it does not say. numba device arrays and torch tensors are never read-only."""
    if cuda.devicearray.is_cuda_ndarray(array) or _torch(array) is not None:
        return False
    return bool(array.__cuda_array_interface__["data"][1])


def _checked_arrays(function, params, grads, states, tables, inputs=None):
    """The kernel's arrays for each tensor (``[param, grad, *states]``, each a 1-D numba device array as
    ``_kernel_view`` shows it) and their storage formats, after checking every array of every tensor: CUDA arrays of a
    storage format on the current device, formats that go together (``_formats_problem``) and are the same for every
    tensor, each tensor's arrays of one shape, C-contiguous, the written ones writeable, and no written array sharing
    memory with any other. With ``tables``, also their int64 address table (row ``j``: tensor ``j``'s arrays in kernel
    order). ``inputs``: the arrays given for the variant's inputs, {name: one per tensor}, read like the gradient.
    Raises TypeError or ValueError naming the first problem, before anything is written."""
    given = _given_inputs(function, inputs, len(params))
    rows, named, extents = [], [], []
    formats = None
    many = function.endswith("_many")
    for k, (param, grad, state) in enumerate(zip(params, grads, states)):
        where, state_name = (f"params[{k}]", f"states[{k}]") if many else ("param", "state")
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
        torch = _torch(param)
        if torch is not None and param.is_cuda:
            for name, array, _ in row[1:]:
                if _torch(array) is not None and array.device != param.device:
                    raise ValueError(f"{VARIANT}.{function}: {name} is on {array.device}, {where} is on {param.device}")
            if param.device.index != torch.cuda.current_device():
                raise ValueError(f"{VARIANT}.{function}: {where} is on {param.device} but the current CUDA device is "
                                 f"cuda:{torch.cuda.current_device()}; step under `with torch.cuda.device(...)`")
        arrays = [_device_array(function, name, array) for name, array, _ in row]
        first = arrays[0]
        for (name, _, _), array in zip(row, arrays):
            if _format(array.dtype) is None:
                raise TypeError(f"{VARIANT}.{function}: {name} must be float64, float32, float16 or bfloat16, got "
                                f"{array.dtype}")
        names = [name for name, _, _ in row]
        formats = _checked_formats(function, where, names, [array.dtype for array in arrays], formats)
        for (name, original, written), array in zip(row, arrays):
            if tuple(array.shape) != tuple(first.shape):
                raise ValueError(f"{VARIANT}.{function}: {name} has shape {tuple(array.shape)}, {where} has shape "
                                 f"{tuple(first.shape)}")
            if not array.is_c_contiguous():
                raise ValueError(f"{VARIANT}.{function}: {name} must be C-contiguous")
            start, readonly = _address(array)
            if written and (readonly or _exported_read_only(original)):
                raise ValueError(f"{VARIANT}.{function}: {name} is read-only")
            extents.append((start, start + array.size * array.dtype.itemsize, written))
            named.append(name)
        rows.append([_kernel_view(array if array.ndim == 1 else array.reshape(array.size)) for array in arrays])
    if extents:
        starts, stops, written = zip(*extents)
        clash = _overlap(starts, stops, written)
        if clash is not None:
            raise ValueError(f"{VARIANT}.{function}: {named[clash[1]]} overlaps {named[clash[0]]} in memory, and one "
                             "of them is written")
    addresses = np.array([start for start, _, _ in extents], np.int64).reshape(len(rows), 2 + len(STATES) + len(INPUTS))
    return rows, addresses if tables else None, formats


def _launch_stream(function, stream, like):
    """The stream to launch on: ``stream`` if given (a numba stream, an object with __cuda_stream__ such as a
    torch.cuda.Stream, or a raw cudaStream_t handle as an int), else torch's current stream when ``like`` is a torch
    tensor, else the default stream."""
    if stream is None:
        torch = _torch(like)
        if torch is None:
            return 0
        stream = torch.cuda.current_stream(like.device).cuda_stream
    if isinstance(stream, int) and not isinstance(stream, bool):
        return cuda.external_stream(stream) if stream else 0
    if type(stream).__module__.startswith("numba."):
        return stream
    if hasattr(stream, "__cuda_stream__"):
        return cuda.external_stream(stream.__cuda_stream__()[1])
    raise TypeError(f"{VARIANT}.{function}: stream must be a numba stream, an object with __cuda_stream__ or a stream "
                    f"handle (int), got {type(stream).__name__}")


def _full(function, what, like, value, state_dtype=None, remainder=False):
    """An array shaped like ``like``, filled with ``value``, in the format ``_state_format`` gives, on its device
    and of its kind: a torch tensor for a torch tensor (a remainder: int16), a numba device array for a numba device
    array, else from ``like``'s own library (CuPy's ``full``; bfloat16 as int16 bits)."""
    torch = _torch(like)
    if torch is not None:
        if not like.is_cuda:
            raise _not_cuda(function, what, like)
        form = _state_format(function, _format(like.dtype) or str(like.dtype), state_dtype, remainder)
        return torch.full_like(like, value, dtype=getattr(torch, "int16" if remainder else form),
                               memory_format=torch.contiguous_format).detach()
    if not cuda.devicearray.is_cuda_ndarray(like) and not hasattr(like, "__cuda_array_interface__"):
        raise _not_cuda(function, what, like)
    if _format(like.dtype) is None:
        raise TypeError(f"{VARIANT}.{function}: {what} must be float64, float32, float16 or bfloat16, got {like.dtype}")
    form = _state_format(function, _format(like.dtype), state_dtype, remainder)
    if cuda.devicearray.is_cuda_ndarray(like):
        return cuda.to_device(_filled(like.shape, value, form))
    library = sys.modules.get(type(like).__module__.partition(".")[0])
    if not hasattr(library, "full"):
        raise _not_cuda(function, what, like)
    return library.full(like.shape, _fill_value(form, value), dtype=_NUMPY_DTYPES[form])


def _copied(function, what, like):
    """A copy of ``like`` (its format: the values exactly), on its device and of its kind, as ``_full`` makes arrays."""
    torch = _torch(like)
    copy = _full(function, what, like, 0.0, _format(like.dtype) or str(like.dtype))
    if torch is not None:
        copy.copy_(like.detach().reshape(copy.shape))
    elif cuda.devicearray.is_cuda_ndarray(like):
        copy.copy_to_device(like)
    else:
        copy[...] = like
    return copy


def _host(array, stream):
    """A device array's values on the host, once the work queued on ``stream`` before has finished."""
    if not isinstance(stream, int):
        values = array.copy_to_host(stream=stream)
        stream.synchronize()
        return values
    return array.copy_to_host()


_buffers = {}  # (device, stream, slot) -> a device array of int64 words kept for the tables of later calls


def _buffer(stream, slot, words):
    """A device buffer of at least ``words`` int64 words for ``slot`` on ``stream``, kept between calls: allocating
    device memory on every step would cost more than the step. Safe to rewrite on the same stream, whose earlier work
    (the kernels that read it) comes first."""
    handle = stream if isinstance(stream, int) else getattr(getattr(stream, "handle", None), "value", id(stream))
    key = (getattr(cuda.get_current_device(), "id", 0), handle, slot)
    buffer = _buffers.get(key)
    if buffer is None or buffer.size < words:
        buffer = _buffers[key] = cuda.device_array(max(words, 2 * (0 if buffer is None else buffer.size), 64),
                                                   np.int64)
    return buffer


def _upload(stream, slot, *arrays):
    """Host arrays on the device in one copy on ``stream``, into ``slot``'s kept buffer: a view of it per array."""
    parts = [np.ascontiguousarray(array) for array in arrays]
    words = [-(-part.nbytes // 8) for part in parts]
    host = np.zeros(max(sum(words), 1), np.int64)
    offsets = np.cumsum([0] + words)
    for part, start in zip(parts, offsets):
        host.view(np.uint8)[8 * start:8 * start + part.nbytes] = part.reshape(-1).view(np.uint8)
    buffer = _buffer(stream, slot, host.size)
    if isinstance(stream, int):
        buffer[:host.size].copy_to_device(host)
    else:
        buffer[:host.size].copy_to_device(host, stream=stream)
    return [buffer[start:start + count].view(part.dtype)[:part.size].reshape(part.shape)
            for part, start, count in zip(parts, offsets, words)]


def _scratch(stream, slot, shape, dtype):
    """A device array of ``shape`` and ``dtype`` (uninitialised) in ``slot``'s kept buffer."""
    count = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    buffer = _buffer(stream, slot, max(-(-count * itemsize // 8), 1))
    return buffer.view(dtype)[:count].reshape(shape)
