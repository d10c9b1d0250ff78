"""Host code of variants with row and column reductions (``Spec.row_sum``, ``Spec.row_state``, ...), shared by every
target.

A tensor is seen as slices of ``rows x cols`` matrices over its last two dimensions (a tensor of one dimension is one
row, a 0-d tensor one element). Row and column states are float64 arrays on the host, one value per row (shaped
``[..., rows, 1]``) or per column (``[..., 1, cols]``; a tensor of one dimension: one per element). The host computes
everything with one value per slice, row or column in float64, over every tensor of a call at once (values of all
tensors one after another); kernels read those values from tables and sum per-element values along rows and down
columns.

The kernels walk a tile table: row ``t`` is a tile of at most ``TILE`` elements, some rows and some columns of one
slice of one tensor. Each tile writes one partial sum per row and per column it covers; the host adds them up
(``_Layout.row_sums``, ``col_sums``) in a fixed order, so results do not depend on threads.
"""

from __future__ import annotations

import math

import numpy as np

from .tables import _overlap

VARIANT = "runtime"  # the generated module's own constants replace these stand-ins
ROW_STATES: dict = {}
COL_STATES: dict = {}

# --- inlined into generated modules from here on ---

# Columns of the tile table.
_TILE_COLUMNS = ("tensor", "row0", "row1", "col0", "col1", "cols", "slice", "row_base", "col_base", "row_part",
                 "col_part")


def _factored_shape(shape):
    """``(ndim, slices, rows, cols)`` of a tensor of ``shape``."""
    shape = tuple(int(size) for size in shape)
    ndim = len(shape)
    if ndim == 0:
        return 0, 1, 1, 1
    if ndim == 1:
        return 1, 1, 1, int(shape[0])
    return ndim, math.prod(shape[:-2]), shape[-2], shape[-1]


def _row_shape(shape):
    """The shape of a row state of a tensor of ``shape``: ``[..., rows, 1]``; ``(1,)`` for fewer than 2 dimensions."""
    shape = tuple(int(size) for size in shape)
    return tuple(shape[:-1]) + (1,) if len(shape) >= 2 else (1,)


def _col_shape(shape):
    """The shape of a column state: ``[..., 1, cols]``; ``shape`` for one dimension, ``(1,)`` for none."""
    shape = tuple(int(size) for size in shape)
    if len(shape) >= 2:
        return tuple(shape[:-2]) + (1, shape[-1])
    return tuple(shape) if shape else (1,)


_LAYOUTS = {}  # (shapes, tile) -> _Layout: the calls of a training loop see the same shapes at every step


def _layout_of(shapes, tile):
    """The ``_Layout`` of the tensors of ``shapes`` (int64 rows of ndim, slices, rows, cols), made once per set of
    shapes (the last 16 kept)."""
    shapes = np.ascontiguousarray(shapes, np.int64).reshape(-1, 4)
    key = (shapes.tobytes(), int(tile))
    layout = _LAYOUTS.get(key)
    if layout is None:
        if len(_LAYOUTS) >= 16:
            _LAYOUTS.pop(next(iter(_LAYOUTS)))
        layout = _LAYOUTS[key] = _Layout(shapes, tile)
    return layout


class _Layout:
    """The tensors of one call as slices, rows and columns, numbered one after another over the call; the tile table
    that cuts them up for the kernels; and the host operations between the levels."""

    def __init__(self, shapes, tile):
        shapes = np.asarray(shapes, np.int64).reshape(-1, 4)
        self.count = count = len(shapes)
        ndim, slices, rows, cols = (shapes[:, k] for k in range(4))
        self.ndim = ndim.astype(np.float64)
        self.rows = np.maximum(rows, 1).astype(np.float64)  # a mean over no rows is 0, as numel counts 1
        self.cols = np.maximum(cols, 1).astype(np.float64)
        self.slice_tensor = np.repeat(np.arange(count), slices)
        slice_rows, slice_cols = rows[self.slice_tensor], cols[self.slice_tensor]
        self.slices, self.total_rows, self.total_cols = len(self.slice_tensor), int(slice_rows.sum()), int(slice_cols.sum())
        self.row_slice = np.repeat(np.arange(self.slices), slice_rows)
        self.col_slice = np.repeat(np.arange(self.slices), slice_cols)
        self.slice_rows = np.maximum(slice_rows, 1).astype(np.float64)
        self.slice_cols = np.maximum(slice_cols, 1).astype(np.float64)
        tensor_rows = np.bincount(self.slice_tensor, slice_rows, count).astype(np.int64)
        self._index = {("tensor", "slice"): self.slice_tensor, ("slice", "row"): self.row_slice,
                       ("slice", "col"): self.col_slice, ("tensor", "row"): self.slice_tensor[self.row_slice],
                       ("tensor", "col"): self.slice_tensor[self.col_slice]}

        # Tiles: per slice, columns in pieces of at most `tile`, rows in pieces that keep a tile within `tile` elements.
        width = np.maximum(np.minimum(slice_cols, tile), 1)
        height = np.maximum(tile // width, 1)
        across = -(-slice_cols // width)
        down = -(-slice_rows // height)
        per_slice = across * down
        tile_slice = np.repeat(np.arange(self.slices), per_slice)
        q = np.arange(tile_slice.size) - np.repeat(np.cumsum(per_slice) - per_slice, per_slice)
        s_across = across[tile_slice]
        down_index, across_index = q // np.maximum(s_across, 1), q % np.maximum(s_across, 1)
        tensor = self.slice_tensor[tile_slice]
        first_slice = np.cumsum(slices) - slices  # each tensor's first slice
        within = tile_slice - first_slice[tensor]  # the slice's index within its tensor
        s_rows, s_cols = slice_rows[tile_slice], slice_cols[tile_slice]
        row0 = within * s_rows + down_index * height[tile_slice]
        row1 = np.minimum(row0 + height[tile_slice], within * s_rows + s_rows)
        col0 = across_index * width[tile_slice]
        col1 = np.minimum(col0 + width[tile_slice], s_cols)
        first_row = np.cumsum(tensor_rows) - tensor_rows
        first_col = np.cumsum(slice_cols) - slice_cols  # each slice's first column
        row_count, col_count = row1 - row0, col1 - col0
        tiles = np.empty((tile_slice.size, len(_TILE_COLUMNS)), np.int64)
        tiles[:, 0], tiles[:, 1], tiles[:, 2], tiles[:, 3], tiles[:, 4] = tensor, row0, row1, col0, col1
        tiles[:, 5], tiles[:, 6], tiles[:, 7], tiles[:, 8] = cols[tensor], tile_slice, first_row[tensor], first_col[tile_slice]
        tiles[:, 9] = np.cumsum(row_count) - row_count
        tiles[:, 10] = np.cumsum(col_count) - col_count
        self.tiles = tiles
        self.row_parts, self.col_parts = int(row_count.sum()), int(col_count.sum())
        # The row and the column each partial sum belongs to (numbered over the call); None where they are in order.
        global_row0 = first_row[tensor] + row0
        self._part_rows = None if self.row_parts == self.total_rows and (across <= 1).all() else \
            np.repeat(global_row0 - (np.cumsum(row_count) - row_count), row_count) + np.arange(self.row_parts)
        global_col0 = first_col[tile_slice] + col0
        self._part_cols = None if self.col_parts == self.total_cols and (down <= 1).all() else \
            np.repeat(global_col0 - (np.cumsum(col_count) - col_count), col_count) + np.arange(self.col_parts)

    def spread(self, values, source, target):
        """``values`` (a number, or one value per ``source``: "tensor", "slice") as one per ``target`` ("slice",
        "row", "col")."""
        values = np.asarray(values)
        return values if values.ndim == 0 else values[self._index[source, target]]

    def slice_mean(self, values, axis):
        """The mean over each slice's rows (``axis`` 0) or columns (1) of ``values``, one per row (column)."""
        if axis == 0:
            return np.bincount(self.row_slice, np.broadcast_to(values, (self.total_rows,)), self.slices) / self.slice_rows
        return np.bincount(self.col_slice, np.broadcast_to(values, (self.total_cols,)), self.slices) / self.slice_cols

    def row_sums(self, parts):
        """The float64 sum along each row from the tiles' partial sums."""
        if self._part_rows is None:
            return parts.astype(np.float64)
        return np.bincount(self._part_rows, parts, self.total_rows)

    def col_sums(self, parts):
        """The float64 sum down each column from the tiles' partial sums (added in tile order)."""
        if self._part_cols is None:
            return parts.astype(np.float64)
        return np.bincount(self._part_cols, parts, self.total_cols)

    def table(self, dtype, size, *columns):
        """A ``(len(columns), size)`` array of ``dtype``: row ``k`` is ``columns[k]`` (a number or ``size`` values),
        rounded once from float64."""
        table = np.empty((len(columns), size), dtype)
        for k, column in enumerate(columns):
            table[k] = column
        return table

    def vector(self, function, name, values, level):
        """A row or column state of every tensor of the call, one after another, as float64 values, checked."""
        size = self.total_rows if level == "row" else self.total_cols
        values = np.asarray(values, np.float64).reshape(-1)
        if values.size != size:
            raise ValueError(f"{VARIANT}.{function}: {name} holds {values.size} values; the shapes given have {size} "
                             f"{level}s")
        return values


def _vector_state(param_shape, value, level):
    """A new row or column state for a parameter of ``param_shape``: float64, filled with ``value``."""
    return np.full(_row_shape(param_shape) if level == "row" else _col_shape(param_shape), value, np.float64)


def _vectors(function, params, states):
    """Every row and column state of the tensors of a call, checked: NumPy float64 arrays of the shape the parameter
    gives, C-contiguous, writeable, none sharing memory with another. Returns {name: [array per tensor]}."""
    found = {}
    starts, stops = [], []
    many = function.endswith("_many")
    for name, level in [(n, "row") for n in ROW_STATES] + [(n, "col") for n in COL_STATES]:
        arrays = found[name] = []
        for k, (param, state) in enumerate(zip(params, states)):
            where = f"states[{k}][{name!r}]" if many else f"state[{name!r}]"
            if not isinstance(state, dict) or name not in state:
                raise ValueError(f"{VARIANT}.{function}: {where} is missing; create the state with {VARIANT}.init")
            array = state[name]
            shape = _row_shape(param.shape) if level == "row" else _col_shape(param.shape)
            if not isinstance(array, np.ndarray) or array.dtype != np.float64:
                raise TypeError(f"{VARIANT}.{function}: {where} must be a numpy float64 array (row and column states "
                                f"are kept on the host), got {type(array).__name__} {getattr(array, 'dtype', '')}")
            if array.shape != shape:
                raise ValueError(f"{VARIANT}.{function}: {where} has shape {array.shape}; a parameter of shape "
                                 f"{tuple(param.shape)} has {'row' if level == 'row' else 'column'} states of shape "
                                 f"{shape}")
            if not array.flags.c_contiguous or not array.flags.writeable:
                raise ValueError(f"{VARIANT}.{function}: {where} must be C-contiguous and writeable")
            arrays.append(array)
            starts.append(array.ctypes.data)
            stops.append(array.ctypes.data + array.nbytes)
    clash = _overlap(starts, stops, [True] * len(starts))
    if clash is not None:
        raise ValueError(f"{VARIANT}.{function}: two row or column states share memory")
    return found
