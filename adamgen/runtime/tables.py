"""Host code shared by every target: hyperparameter checks, and the tables that let one kernel call cover many tensors.

A many-tensor kernel walks a chunk table: row ``c`` is ``(tensor, start, stop)``, a piece of at most ``CHUNK`` elements
of one tensor, tensor by tensor. It finds tensor ``j``'s arrays in row ``j`` of an address table (built by the caller
after checking every array) and its host values in row ``j`` of a scalar table and a flag table, so tensors with other
step counts or other sums share the call.
"""

from __future__ import annotations

import numpy as np

VARIANT = "runtime"  # the generated module's own constants replace these stand-ins
HYPERPARAMETERS: dict = {}
INPUTS: tuple = ()

# --- inlined into generated modules from here on ---


def _number(function, name, value):
    """A hyperparameter as a float64, checked before anything is written: a TypeError names it if it is not a number.

    NumPy float64 arithmetic follows IEEE: a division by zero or an overflow on the host gives inf or nan, as in the
    kernels, never an exception halfway through a step."""
    if type(value) is float:
        return np.float64(value)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"{VARIANT}.{function}: hyperparameter {name} must be a number, got {value!r}")
    try:
        return np.float64(float(value))
    except (TypeError, ValueError) as error:  # e.g. a tensor of several elements
        raise TypeError(f"{VARIANT}.{function}: hyperparameter {name} must be a single number, got {value!r}") \
            from error


def _flag(function, name, value):
    """A boolean hyperparameter (``maximize``)."""
    if not isinstance(value, (bool, np.bool_, int, np.integer)) or value not in (0, 1):
        raise TypeError(f"{VARIANT}.{function}: hyperparameter {name} must be True or False, got {value!r}")
    return bool(value)


def _unknown(function, names):
    """The TypeError for keyword arguments that are not hyperparameters of this variant."""
    hint = ""
    if "betas" in names:
        betas = [name for name in HYPERPARAMETERS if name.startswith("beta") and name[4:].isdigit()]
        hint = f"; betas are given one by one as {', '.join(betas) or 'no beta: this variant has none'}"
    return TypeError(f"{VARIANT}.{function}: unknown hyperparameter(s) {', '.join(sorted(names))}; {VARIANT} takes "
                     f"{', '.join(HYPERPARAMETERS)}{hint}")


def _given_inputs(function, inputs, count):
    """The arrays given for each of the variant's inputs, {name: one per tensor}: ``step`` takes one array per input,
    ``step_many`` a sequence of one per tensor. A TypeError names an input that is missing or of the wrong kind."""
    inputs = inputs or {}
    many = function.endswith("_many")
    given = {}
    for name in INPUTS:
        value = inputs.get(name)
        if value is None:
            raise TypeError(f"{VARIANT}.{function}: the input {name} is missing: pass {name}="
                            + ("[one array per tensor]" if many else "an array shaped like param"))
        if many:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or hasattr(value, "shape"):
                raise TypeError(f"{VARIANT}.{function}: the input {name} must be a sequence of one array per tensor")
            value = list(value)
            if len(value) != count:
                raise ValueError(f"{VARIANT}.{function}: the input {name} has {len(value)} arrays for {count} tensors")
            given[name] = value
        else:
            given[name] = [value]
    return given


def _step_count(function, where, value):
    """A state's step counter (the steps taken so far) as an int, or a TypeError naming the state."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TypeError(f"{VARIANT}.{function}: {where}['step'] must be a non-negative int (the steps taken so far), "
                        f"got {value!r}")
    return int(value)


def _scalar_state(function, where, name, value):
    if isinstance(value, (str, bytes, bool)) or not hasattr(value, "__float__"):
        raise TypeError(f"{VARIANT}.{function}: {where}[{name!r}] must be a number, got {value!r}")
    return float(value)


def _chunk_table(sizes, chunk):
    """Rows ``(tensor, start, stop)`` cutting tensor ``j`` (of ``sizes[j]`` elements) into pieces of at most ``chunk``
    elements, tensor by tensor; an empty tensor gets no row."""
    sizes = np.asarray(sizes, np.int64)
    counts = -(-sizes // chunk)
    if sizes.size <= 16:  # few tensors: a list is faster than NumPy's calls
        rows = [(j, start, min(start + chunk, n)) for j, n in enumerate(sizes.tolist()) for start in range(0, n, chunk)]
        return np.array(rows, np.int64).reshape(len(rows), 3)
    tensor = np.repeat(np.arange(sizes.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    start = (np.arange(tensor.size, dtype=np.int64) - first[tensor]) * chunk
    table = np.empty((tensor.size, 3), np.int64)
    table[:, 0] = tensor
    table[:, 1] = start
    table[:, 2] = np.minimum(start + chunk, sizes[tensor])
    return table


def _table(count, dtype, *columns):
    """A ``(count, len(columns))`` array of ``dtype`` whose column ``k`` is ``columns[k]``: one value for every
    tensor, or one value per tensor. Host values are float64; casting rounds each once to ``dtype``."""
    table = np.empty((count, len(columns)), dtype)
    for k, column in enumerate(columns):
        table[:, k] = column
    return table


def _tensor_sums(partials, chunks, count):
    """Per tensor, the float64 sums of the kernels' per-chunk partial sums (``partials[c, k]`` for chunk ``c``), added
    in chunk order; an empty tensor sums to 0."""
    return [np.bincount(chunks[:, 0], weights=partials[:, k], minlength=count) for k in range(partials.shape[1])]


def _sums(partials):
    """The float64 sums of one tensor's per-chunk partial sums, added in chunk order as ``_tensor_sums`` adds them, so
    that ``step`` and ``step_many`` agree to the bit."""
    if not len(partials):
        return np.zeros(partials.shape[1])
    return np.cumsum(partials, axis=0, dtype=np.float64)[-1]


def _overlap(starts, stops, written):
    """Two memory ranges ``[start, stop)`` that share an address while at least one of them is written, as indices
    ``(a, b)`` with ``a < b``, or None. Ranges that are only read may overlap each other; empty ranges overlap nothing.
    O(n log n): the ranges are sorted by start, and each is compared with the furthest reach of those before it."""
    if len(starts) <= 16:  # few ranges: pairs in Python are faster than NumPy's calls
        ranges = list(zip(starts, stops, written))
        for b, (start_b, stop_b, written_b) in enumerate(ranges):
            for a, (start_a, stop_a, written_a) in enumerate(ranges[:b]):
                if (written_a or written_b) and start_a < stop_b and start_b < stop_a:
                    return a, b
        return None
    starts, stops = np.asarray(starts, np.int64), np.asarray(stops, np.int64)
    written = np.asarray(written, bool)
    sized = np.flatnonzero(stops > starts)
    if sized.size < 2:
        return None
    order = sized[np.argsort(starts[sized], kind="stable")]
    ends, writes = stops[order], written[order]
    reach_any = np.maximum.accumulate(ends)[:-1]
    reach_written = np.maximum.accumulate(np.where(writes, ends, np.iinfo(np.int64).min))[:-1]
    begins = starts[order[1:]]
    hits = np.flatnonzero(np.where(writes[1:], begins < reach_any, begins < reach_written))
    if not hits.size:
        return None
    b = order[hits[0] + 1]
    earlier = order[:hits[0] + 1]
    partners = earlier[(stops[earlier] > starts[b]) & (written[earlier] | written[b])]
    a = partners[0]
    return int(min(a, b)), int(max(a, b))
