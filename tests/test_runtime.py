"""The runtime code that generated modules inline (adamgen/runtime/*.py), tested as the Python it is."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adamgen.runtime import INLINE_MARKER, inline
from adamgen.runtime.cpu import _at, _maximum, _minimum
from adamgen.runtime.tables import _chunk_table, _number, _overlap, _sums, _table, _tensor_sums

sizes_lists = st.lists(st.integers(0, 20_000), min_size=0, max_size=40)


def _chunks_by_definition(sizes, chunk):
    return [(j, start, min(start + chunk, n)) for j, n in enumerate(sizes) for start in range(0, n, chunk)]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(sizes_lists, st.sampled_from([1, 7, 4096, 1 << 14]))
def test_chunk_table_cuts_each_tensor_in_order(sizes, chunk):
    """Both ways of building it (a list for few tensors, NumPy for many) give every element exactly once."""
    table = _chunk_table(sizes, chunk)
    assert table.dtype == np.int64 and table.shape == (len(_chunks_by_definition(sizes, chunk)), 3)
    assert [tuple(row) for row in table.tolist()] == _chunks_by_definition(sizes, chunk)


def _overlap_by_definition(starts, stops, written):
    for b in range(len(starts)):
        for a in range(b):
            if (written[a] or written[b]) and starts[a] < stops[b] and starts[b] < stops[a]:
                return True
    return False


ranges = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 30), st.booleans()), min_size=0, max_size=60)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(ranges)
def test_overlap_finds_exactly_the_conflicts(items):
    """A pair is reported if and only if some written range shares an address with another range; the pair named
    does overlap. Ranges that are only read may overlap each other."""
    starts = [start for start, _, _ in items]
    stops = [start + length for start, length, _ in items]
    written = [flag for _, _, flag in items]
    clash = _overlap(starts, stops, written)
    assert (clash is not None) == _overlap_by_definition(starts, stops, written)
    if clash is not None:
        a, b = clash
        assert a < b and (written[a] or written[b])
        assert starts[a] < stops[b] and starts[b] < stops[a]


def test_overlap_on_many_ranges_uses_the_sorted_sweep():
    """Above 16 ranges the sweep runs: 10,000 disjoint ranges, then one that touches the 5000th."""
    starts = list(range(0, 100_000, 10))
    stops = [s + 10 for s in starts]
    assert _overlap(starts, stops, [True] * len(starts)) is None
    assert _overlap(starts + [50_005], stops + [50_006], [True] * len(starts) + [False]) == (5000, 10_000)
    assert _overlap(starts + [50_005], stops + [50_006], [False] * len(starts) + [False]) is None


def test_tensor_sums_add_each_tensors_chunks_in_order():
    chunks = _chunk_table([3, 0, 9000, 1], 4096)
    partials = np.arange(len(chunks) * 2, dtype=np.float32).reshape(-1, 2)
    sums = _tensor_sums(partials, chunks, 4)
    expected = [[partials[chunks[:, 0] == j, k].astype(np.float64).sum() for j in range(4)] for k in range(2)]
    np.testing.assert_array_equal(np.array(sums), expected)
    np.testing.assert_array_equal(_sums(partials[1:4]), partials[1:4].astype(np.float64).sum(axis=0))
    assert _sums(np.zeros((0, 3), np.float32)).tolist() == [0.0, 0.0, 0.0]


def test_table_broadcasts_scalars_and_rounds_once():
    table = _table(3, np.float32, 0.1, np.array([1.0, 2.0, 3.0]), np.float64(1e-45))
    assert table.dtype == np.float32 and table.shape == (3, 3)
    assert table[:, 0].tolist() == [np.float32(0.1)] * 3 and table[:, 1].tolist() == [1.0, 2.0, 3.0]


def test_number_is_float64_and_names_what_is_not_a_number():
    assert type(_number("step", "lr", 0.1)) is np.float64 and _number("step", "lr", 3) == 3.0
    with pytest.raises(TypeError, match="runtime.step: hyperparameter lr must be a number, got '1'"):
        _number("step", "lr", "1")
    with pytest.raises(TypeError, match="must be a single number"):
        _number("step", "lr", np.ones(2))


@numba.njit
def _read_write(address, count, values):
    view = _at(address, count, values.dtype)
    total = 0.0
    for i in range(count):
        total += view[i]
        view[i] = values[i]
    return total


def test_at_reads_and_writes_an_array_through_its_address():
    target = np.arange(5, dtype=np.float32)
    total = _read_write(target.ctypes.data, 5, np.full(5, 7, np.float32))
    assert total == 10 and target.tolist() == [7.0] * 5


@numba.njit
def _extremes(a, b):
    return _maximum(a, b), _minimum(a, b)


@pytest.mark.parametrize("a, b", [(1.0, 2.0), (2.0, 1.0), (np.nan, 1.0), (1.0, np.nan), (-np.inf, np.inf)])
def test_maximum_and_minimum_propagate_nan_as_numpy(a, b):
    high, low = _extremes(np.float32(a), np.float32(b))
    for ours, theirs in ((high, np.maximum(a, b)), (low, np.minimum(a, b))):
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == theirs


@pytest.mark.parametrize("name", ["tables", "cpu", "cuda", "atan2"])
def test_inlined_bodies_define_only_private_names(name):
    """What a module inlines starts below the marker, names its source, and defines only names starting with an
    underscore (spec names never do), so nothing it defines can collide with a spec's name."""
    import ast

    body = inline(name)
    assert body.startswith(f"# Inlined from adamgen/runtime/{name}.py.") and INLINE_MARKER not in body
    tree = ast.parse(body)
    defined = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    defined += [target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                if isinstance(target, ast.Name)]
    assert defined and all(name.startswith("_") or name == "MAX_BLOCKS" for name in defined), defined
