"""Storage formats: what memory holds, apart from what the kernels compute in.

Arrays hold float64, float32, float16 or bfloat16 numbers. Kernels compute in float64 when the parameter is float64 and
in float32 otherwise: ``_load`` widens a stored element to the compute dtype (exactly), ``_stored`` rounds a computed
value to an array's format, to nearest with ties to even, as a cast in torch and NumPy does (NaN stays NaN, overflow
gives infinity).

NumPy has no bfloat16, so a bfloat16 array is an int16 array of the raw bits (torch: ``tensor.view(torch.int16)``);
numba's CPU compiler has no float16, so kernels see a float16 array as a uint16 array of its bits (``_kernel_view``).
The conversions are integer arithmetic on those bits, the same on the CPU and the GPU; their Python bodies serve NumPy
scalars (the CUDA simulator runs kernels as Python), their compiled forms are overloads for the target's compiler.
"""

from __future__ import annotations

import numpy as np
from numba.core import types as _types
from numba.core.extending import overload as _overload

VARIANT = "runtime"  # the generated module's own constants replace these stand-ins
STATES: tuple = ()
INPUTS: tuple = ()
REMAINDERS: tuple = ()

# --- inlined into generated modules from here on ---

# storage format -> the dtype kernels see its arrays as
_KERNEL_DTYPES = {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32), "float16": np.dtype(np.uint16),
                  "bfloat16": np.dtype(np.int16)}
_FORMATS = {np.dtype(np.float64): "float64", np.dtype(np.float32): "float32", np.dtype(np.float16): "float16",
            np.dtype(np.int16): "bfloat16"}  # a NumPy array's dtype -> the format it holds
_NUMPY_DTYPES = {form: dtype for dtype, form in _FORMATS.items()}  # a format -> the NumPy dtype of its arrays


def _kernel_view(array):
    """``array`` as kernels see it: a float16 array as its uint16 bits, any other array as it is (no copy)."""
    return array.view(np.uint16) if array.dtype == np.float16 else array


# The conversions are written without branches (each choice a select between values computed either way) and with
# every integer result wrapped in _u32 (numba computes uint32 arithmetic in 64 bits otherwise), so that loops calling
# them vectorize 8 lanes wide.
_u32 = np.uint32


def _bf16_widen(x):
    """The bfloat16 number of int16 bits ``x`` as the float32 of the same value."""
    return _u32(_u32(np.uint16(x)) << _u32(16)).view(np.float32)


def _bf16_round(value, array):
    """The float32 ``value`` rounded to bfloat16 (to nearest, ties to even), as int16 bits; NaN gives a quiet NaN.
    (``array``, unused, is the bfloat16 array it goes to: the signature of ``_stored``.)"""
    b = np.float32(value).view(np.uint32)
    odd = _u32(_u32(b >> _u32(16)) & _u32(1))
    nearest = _u32(_u32(_u32(b + _u32(0x7FFF)) + odd) >> _u32(16))
    quiet = _u32(_u32(b >> _u32(16)) | _u32(0x40))
    return np.uint16(quiet if value != value else nearest).view(np.int16)


def _f16_widen(x):
    """The float16 number of uint16 bits ``x`` as the float32 of the same value: a normal number's bits moved to a
    float32's places with the exponent rebiased (15 to 127), a subnormal one its mantissa times 2**-24 (exact),
    infinity and NaN given float32's largest exponent; then the sign."""
    h = _u32(np.uint16(x))
    shifted = _u32(_u32(h & _u32(0x7FFF)) << _u32(13))
    exponent = _u32(h & _u32(0x7C00))
    normal = _u32(shifted + _u32(0x38000000))
    special = _u32(shifted | _u32(0x7F800000))
    tiny = np.float32(np.float32(_u32(h & _u32(0x3FF))) * np.float32(5.960464477539063e-08)).view(np.uint32)
    magnitude = special if exponent == _u32(0x7C00) else normal
    magnitude = tiny if exponent == _u32(0) else magnitude
    return _u32(magnitude | _u32(_u32(h & _u32(0x8000)) << _u32(16))).view(np.float32)


def _f16_round(value, array):
    """The float32 ``value`` rounded to float16 (to nearest, ties to even), as uint16 bits (``array`` as for
    ``_bf16_round``)."""
    b = np.float32(value).view(np.uint32)
    sign = _u32(_u32(b >> _u32(16)) & _u32(0x8000))
    b = _u32(b & _u32(0x7FFFFFFF))
    # below float16's smallest normal, 2**-14: adding 0.5 rounds at float16's subnormal spacing, 2**-24
    tiny = _u32(np.float32(b.view(np.float32) + np.float32(0.5)).view(np.uint32) - _u32(0x3F000000))
    # normal: rebias the exponent, round the 13 dropped bits to nearest even (a carry may reach infinity: correct)
    least = b if b >= _u32(0x38000000) else _u32(0x38000000)  # (unsigned: no wrap-around for tiny ones)
    odd = _u32(_u32(b >> _u32(13)) & _u32(1))
    normal = _u32(_u32(_u32(least - _u32(0x38000000)) + _u32(0xFFF + odd)) >> _u32(13))
    h = tiny if b < _u32(0x38800000) else normal
    h = _u32(0x7C00) if b >= _u32(0x47800000) else h  # 2**16 and beyond: infinity
    h = _u32(0x7E00) if b > _u32(0x7F800000) else h  # NaN: a quiet NaN
    return np.uint16(_u32(h | sign))


def _bf16_round_randomly(value, array, seed, step, j, index):
    """The float32 ``value`` rounded stochastically to bfloat16, as int16 bits: 16 random bits added below the kept
    ones, then truncated, so it rounds up with a probability equal to the dropped fraction (away from zero for a
    negative value; NaN gives a quiet NaN). The bits hash (seed, step, tensor ``j``, element ``index``) with
    multiply-xorshift rounds (MurmurHash3's finalizer), in 32-bit lanes. (``array`` as for ``_bf16_round``.)"""
    h = _u32(_u32(np.int64(seed)) * _u32(0x9E3779B1))
    h = _u32(h ^ _u32(_u32(np.int64(step)) * _u32(0x85EBCA77)))
    h = _u32(h ^ _u32(_u32(j) * _u32(0xC2B2AE3D)))
    h = _u32(h ^ _u32(index))
    h = _u32(h ^ _u32(h >> _u32(16)))
    h = _u32(h * _u32(0x85EBCA6B))
    h = _u32(h ^ _u32(h >> _u32(13)))
    h = _u32(h * _u32(0xC2B2AE35))
    h = _u32(h ^ _u32(h >> _u32(16)))
    b = np.float32(value).view(np.uint32)
    up = _u32(_u32(b + _u32(h & _u32(0xFFFF))) >> _u32(16))
    quiet = _u32(_u32(b >> _u32(16)) | _u32(0x40))
    return np.uint16(quiet if value != value else up).view(np.int16)


# master_weights: a bfloat16 parameter and an int16 remainder state hold a float32 value exactly, as its high and low
# halves; the high half is rounded up where the low half is negative as an int16 (0x8000 or more), so that the
# parameter is the float32 value to nearest (ties away from zero), and joining takes the rounding back. Both directions
# are bit operations: the float32 trajectory is the one a float32 parameter would take, bit for bit.


def _bf16_joined(param, remainder, array):
    """The float32 that the bfloat16 ``param`` and its ``remainder`` hold together, both as ``_load`` widened them
    (their bits in the high half of a float32). (``array``, unused, is the parameter's array: the signature of
    ``_joined``.)"""
    high = _u32(np.float32(param).view(np.uint32) >> _u32(16))
    low = _u32(np.float32(remainder).view(np.uint32) >> _u32(16))
    return _u32(_u32(_u32(high - _u32(low >> _u32(15))) << _u32(16)) | low).view(np.float32)


def _bf16_high_half(value, array):
    """The float32 ``value``'s high 16 bits, plus one where its low 16 bits are 0x8000 or more, as a float32 (which a
    bfloat16 array stores exactly; ``array`` as for ``_bf16_joined``)."""
    b = np.float32(value).view(np.uint32)
    return _u32(_u32(_u32(b + _u32(0x8000)) >> _u32(16)) << _u32(16)).view(np.float32)


def _bf16_low_half(value, array):
    """The float32 ``value``'s low 16 bits as an int16 (``array`` as for ``_bf16_joined``)."""
    return np.uint16(_u32(np.float32(value).view(np.uint32) & _u32(0xFFFF))).view(np.int16)


def _load(x):
    """One stored element in the compute dtype (Python body: NumPy scalars)."""
    if isinstance(x, np.int16):
        return _bf16_widen(x)
    if isinstance(x, np.uint16):
        return _f16_widen(x)
    return x


def _stored(value, array):
    """``value`` (in the compute dtype) rounded to the format of ``array``'s elements; an int16 ``value`` (a remainder's
    bits) as it is (Python body: NumPy arrays)."""
    if isinstance(value, np.integer):
        return value
    if array.dtype == np.int16:
        return _bf16_round(value, array)
    if array.dtype == np.uint16:
        return _f16_round(value, array)
    return value


def _stored_randomly(value, array, seed, step, j, index):
    """``value`` rounded stochastically (``_bf16_round_randomly``) where ``array`` holds bfloat16, else as ``_stored``
    (Python body: NumPy scalars, whose uint32 products wrap as the compiled ones do)."""
    if array.dtype == np.int16:
        with np.errstate(over="ignore"):
            return _bf16_round_randomly(value, array, seed, step, j, index)
    return _stored(value, array)


def _joined(param, remainder, array):
    """``_bf16_joined`` where the parameter's ``array`` holds bfloat16, else ``param`` itself (Python body)."""
    if array.dtype == np.int16:
        with np.errstate(over="ignore"):
            return _bf16_joined(param, remainder, array)
    return param


def _high_half(value, array):
    """``_bf16_high_half`` where the parameter's ``array`` holds bfloat16, else ``value`` itself (Python body)."""
    if array.dtype == np.int16:
        with np.errstate(over="ignore"):
            return _bf16_high_half(value, array)
    return value


def _low_half(value, array):
    """``_bf16_low_half`` where the parameter's ``array`` holds bfloat16, else 0 (Python body)."""
    return _bf16_low_half(value, array) if array.dtype == np.int16 else np.int16(0)


def _load_typed(x):
    if isinstance(x, _types.Integer):
        return _bf16_widen if x.signed else _f16_widen
    return lambda x: x


def _stored_typed(value, array):
    if isinstance(value, _types.Integer):
        return lambda value, array: value
    if isinstance(array.dtype, _types.Integer):
        return _bf16_round if array.dtype.signed else _f16_round
    return lambda value, array: value


def _stored_randomly_typed(value, array, seed, step, j, index):
    if isinstance(array.dtype, _types.Integer) and array.dtype.signed:
        return _bf16_round_randomly
    return lambda value, array, seed, step, j, index: _stored(value, array)


def _is_bfloat16(array):
    return isinstance(array.dtype, _types.Integer) and array.dtype.signed


def _joined_typed(param, remainder, array):
    return _bf16_joined if _is_bfloat16(array) else lambda param, remainder, array: param


def _high_half_typed(value, array):
    return _bf16_high_half if _is_bfloat16(array) else lambda value, array: value


def _low_half_typed(value, array):
    return _bf16_low_half if _is_bfloat16(array) else lambda value, array: np.int16(0)


# The compiled forms, for the target's compiler (the generated module imports its `overload` as `_overload`).
_overload(_load)(_load_typed)
_overload(_stored)(_stored_typed)
_overload(_stored_randomly)(_stored_randomly_typed)
_overload(_joined)(_joined_typed)
_overload(_high_half)(_high_half_typed)
_overload(_low_half)(_low_half_typed)


def _format(value):
    """The storage format named by ``value`` (a format name, a NumPy dtype or type, a torch dtype), or None."""
    if isinstance(value, str) and value in _KERNEL_DTYPES:
        return value
    if type(value).__module__ == "torch":
        name = str(value).removeprefix("torch.")
        return "bfloat16" if name == "int16" else name if name in _KERNEL_DTYPES else None  # int16: bits, as NumPy's
    try:
        return _FORMATS.get(np.dtype(value))
    except TypeError:
        return None


def _state_formats(param_format):
    """The formats a state of a parameter of ``param_format`` may have: float64 for a float64 parameter (the kernels
    compute in float64), else any of float32, float16 and bfloat16 (the kernels compute in float32)."""
    return ("float64",) if param_format == "float64" else ("float32", "float16", "bfloat16")


def _state_format(function, param_format, state_dtype, remainder=False):
    """The format of a new state array for a parameter of ``param_format``: its own (float32 if the module keeps
    remainders: master weights are float32 values), or ``state_dtype`` if given (one of ``_state_formats``); a
    ``remainder``'s is bfloat16, int16 bits, for a bfloat16 parameter only. A TypeError names a wrong one."""
    if remainder or REMAINDERS and param_format != "bfloat16":
        if param_format != "bfloat16":
            raise TypeError(f"{VARIANT}.{function}: master_weights keeps bfloat16 parameters (with int16 remainders that "
                            f"make them float32 values), not {param_format} ones")
        return "bfloat16"
    if state_dtype is None:
        return "float32" if REMAINDERS else param_format
    chosen = _format(state_dtype)
    allowed = _state_formats(param_format)
    if chosen not in allowed:
        raise TypeError(f"{VARIANT}.{function}: state_dtype {state_dtype!r} is not a state format for a {param_format} "
                        f"parameter; choose {', '.join(allowed)}")
    return chosen


def _formats_problem(names, formats):
    """What is wrong with the formats of one tensor's arrays (``[param, grad, *states]``, named ``names``), or None:
    the gradient has the parameter's format, each state one of ``_state_formats``."""
    param = formats[0]
    if formats[1] != param:
        return f"{names[1]} is {formats[1]}, {names[0]} is {param}"
    if REMAINDERS and param != "bfloat16":
        return (f"{names[0]} is {param}; master_weights keeps bfloat16 parameters (with int16 remainders that make "
                "them float32 values)")
    for k in (2 + STATES.index(name) for name in REMAINDERS):
        if formats[k] != "bfloat16":
            return f"{names[k]} is {formats[k]}; a remainder is int16 (the low bits of a float32 value)"
    *others, last = allowed = _state_formats(param)
    for name, form in zip(names[2:], formats[2:]):
        if form not in allowed:
            return f"{name} is {form}; with a {param} parameter, states are " + \
                (f"{', '.join(others)} or {last}" if others else last)
    return None


def _checked_formats(function, where, names, dtypes, formats):
    """The formats of one tensor's arrays (named ``names``, of NumPy ``dtypes``, each a storage format), after checking
    that they go together and equal ``formats``, those of the call's earlier tensors (None for the first): a TypeError
    names the problem."""
    found = tuple(_format(dtype) for dtype in dtypes)
    problem = _formats_problem(names, found)
    if problem is None and formats is not None and found != formats:
        problem = (f"{where}'s arrays are {', '.join(found)}, params[0]'s are {', '.join(formats)}; one call takes one "
                   "combination")
    if problem is not None:
        raise TypeError(f"{VARIANT}.{function}: {problem}")
    return found


def _table_formats(function, dtype):
    """``step_tables``' ``dtype`` as one format per array: a dtype (or format name) for all the arrays, or a sequence
    of one per array; a TypeError names a wrong one."""
    names = ["param", "grad", *STATES, *INPUTS]
    width = len(names)
    given = list(dtype) if isinstance(dtype, (list, tuple)) else [dtype]
    formats = [_format(f) for f in ([dtype] * width if _format(dtype) is not None else given)]
    if len(formats) != width or None in formats:
        raise TypeError(f"{VARIANT}.{function}: dtype must be the arrays' dtype or a sequence of {width} dtypes (one "
                        f"per array: {', '.join(names)}) among float64, float32, float16 and bfloat16, got {dtype!r}")
    problem = _formats_problem(names, formats)
    if problem is not None:
        raise TypeError(f"{VARIANT}.{function}: {problem}")
    return tuple(formats)


def _compute_dtype(formats):
    """What the kernels compute in for arrays of ``formats``: float64 for a float64 parameter, else float32."""
    return np.dtype(np.float64 if formats[0] == "float64" else np.float32)


_witness_cache = {}


def _witnesses(formats):
    """A zero of each array's kernel dtype: a kernel over an address table reads each array with its scalar's type."""
    if formats not in _witness_cache:
        _witness_cache[formats] = tuple(_KERNEL_DTYPES[f].type(0) for f in formats)
    return _witness_cache[formats]


def _fill_value(form, value):
    """``value`` as an element of an array of format ``form`` holds it (bfloat16: its bits, rounded to nearest even)."""
    return _bf16_round(np.float32(value), None) if form == "bfloat16" else value


def _filled(shape, value, form):
    """A new NumPy array of ``shape`` and format ``form``, every element ``value``."""
    return np.full(shape, _fill_value(form, value), _NUMPY_DTYPES[form])
