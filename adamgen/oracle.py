"""The float64 oracle: a variant evaluated straight from its SymPy definitions.

It shares nothing with the code generator past validation: no hoisting, no CSE, no adamgen printer. Each definition is
evaluated in order with ``sympy.lambdify`` over NumPy float64 arrays, so a disagreement with a generated kernel points at
the generator, not at the spec. It offers the generated modules' interface (``init``, ``step``) for tests and for users
who want a slow, exact reference.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy

from .runtime.factored import _col_shape, _factored_shape, _row_shape
from .spec import GroupSum, ReduceSum
from .spec import param as PARAM
from .transforms import maximize
from .variants import as_variant


class Oracle:
    """``Oracle(spec_or_variant)`` with ``init(param)``, ``step(param, grad, state, **hyperparameters)`` and
    ``step_many(params, grads, states, **hyperparameters)``, in float64. ``step`` is ``step_many`` of one tensor; the
    tensors of one ``step_many`` are the group a ``GroupSum`` adds over."""

    def __init__(self, spec):
        self.variant = maximize(as_variant(spec))
        self.name = self.variant.name
        self.defaults = {h.name: d for h, d in self.variant.hyperparameters}
        self.state_names = tuple(s.name for s, _ in self.variant.states)
        vectors = {s for s, _ in self.variant.row_states + self.variant.col_states}
        self._inputs = sorted(self.variant.element_symbols | self.variant.host_symbols | vectors, key=str)
        self._functions = []  # (symbol, function of the known values and the group totals, [(total, summand)])
        self._shape = ()  # the tensor's shape; (slices, rows, cols) for a factored variant
        self.vectors = {s.name: "row" for s, _ in self.variant.row_states}
        self.vectors.update({s.name: "col" for s, _ in self.variant.col_states})
        functions = {"ReduceSum": lambda values: np.sum(np.broadcast_to(values, self._shape), dtype=np.float64),
                     "RowSum": lambda values: np.sum(np.broadcast_to(values, self._shape), axis=-1, keepdims=True),
                     "ColSum": lambda values: np.sum(np.broadcast_to(values, self._shape), axis=-2, keepdims=True),
                     "RowsMean": lambda values: np.sum(np.broadcast_to(values, self._shape[:-1] + (1,)), axis=-2,
                                                       keepdims=True) / max(self._shape[-2], 1),
                     "ColsMean": lambda values: np.sum(np.broadcast_to(values, self._shape[:-2] + (1, self._shape[-1])),
                                                       axis=-1, keepdims=True) / max(self._shape[-1], 1),
                     "Stored": lambda value: value, "Evaluated": lambda value: value,  # exact arithmetic
                     "RandomlyStored": lambda value, seed, step: value,
                     "HighHalf": lambda value: value,
                     "LowHalf": lambda value: np.zeros_like(value),
                     # SymPy prints And/Or as logical_and.reduce((a, b)), which fails on a scalar next to an array
                     "logical_and": _Logical(np.logical_and), "logical_or": _Logical(np.logical_or)}
        known = list(self._inputs)
        for symbol, expr in self.variant.definitions:
            groups = []  # each group sum: a total over every tensor, computed before the definition is evaluated
            for node in sorted(expr.atoms(GroupSum), key=str):
                total = sympy.Dummy("group_total")
                groups.append((total, sympy.lambdify(known, ReduceSum(node.args[0]), modules=[functions, "numpy"])))
                expr = expr.xreplace({node: total})
            arguments = known + [total for total, _ in groups]
            self._functions.append((symbol, sympy.lambdify(arguments, expr, modules=[functions, "numpy"]), groups))
            known.append(symbol)

    def init(self, param) -> dict:
        state = {"step": 0}
        state.update({s.name: np.array(param, np.float64) if init is PARAM
                      else np.full(np.shape(param), init, np.float64) for s, init in self.variant.states})
        state.update({s.name: init for s, init in self.variant.scalar_states})
        state.update({s.name: np.full(_row_shape(np.shape(param)), init, np.float64) for s, init in self.variant.row_states})
        state.update({s.name: np.full(_col_shape(np.shape(param)), init, np.float64) for s, init in self.variant.col_states})
        return state

    def step(self, param, grad, state, **hyperparameters) -> None:
        """Advance ``param`` (a float64 array) and ``state`` in place by one step; the variant's inputs are keyword
        arguments, as in the generated modules."""
        inputs = {s.name: [hyperparameters.pop(s.name)] for s in self.variant.inputs if s.name in hyperparameters}
        self.step_many([param], [grad], [state], **inputs, **hyperparameters)

    def step_many(self, params, grads, states, **hyperparameters) -> None:
        """Advance each of ``params`` (float64 arrays) and its state in place by one step, as one group."""
        inputs = {s.name: hyperparameters.pop(s.name, None) for s in self.variant.inputs}
        missing = [name for name, arrays in inputs.items() if arrays is None]
        if missing:
            raise TypeError(f"{self.name}: the input(s) {', '.join(missing)} are missing")
        unknown = set(hyperparameters) - set(self.defaults)
        if unknown:
            raise TypeError(f"{self.name}: unknown hyperparameter(s) {', '.join(sorted(unknown))}")
        arguments = [self._arguments(*row, hyperparameters, {name: arrays[k] for name, arrays in inputs.items()})
                     for k, row in enumerate(zip(params, grads, states))]
        shapes = [self._seen_as(np.shape(param)) for param in params]
        # Piecewise evaluates its branches everywhere; a product may overflow to an infinity that Min then drops (as in
        # the generated host code, which ignores these too)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            for symbol, function, groups in self._functions:
                totals = []
                for _, summand in groups:
                    total = np.float64(0.0)
                    for args, shape in zip(arguments, shapes):
                        self._shape = shape
                        total += summand(*args)
                    totals.append(total)
                for args, shape in zip(arguments, shapes):
                    self._shape = shape
                    args.append(function(*args, *totals))
        for param, state, args in zip(params, states, arguments):
            values = dict(zip([s.name for s in self._inputs] + [s.name for s, _, _ in self._functions], args))
            # Copies, all taken before any write: a new value may be an input array itself (prev_grad_new = param).
            new_values = [(target, np.array(values[new.name], np.float64)) for target, new in self.variant.updates]
            for target, value in new_values:
                if target.name == "param":
                    param[...] = self._as(value, param)
                elif target.name in self.state_names or target.name in self.vectors:
                    state[target.name][...] = self._as(value, state[target.name])
                else:
                    state[target.name] = float(value)
            state["step"] += 1

    def _seen_as(self, shape) -> tuple:
        """The shape the rule sees a tensor as: its own, or (slices, rows, cols) for a factored variant."""
        return _factored_shape(shape)[1:] if self.variant.factored else tuple(shape)

    def _as(self, value, array):
        """A new value (a number or an array of the tensor's, row's or column's shape as the rule sees it) shaped like
        ``array``."""
        value = np.asarray(value, np.float64)
        if not self.variant.factored or value.ndim == 0:
            return value
        return value.reshape(np.shape(array)) if value.size == np.size(array) else \
            np.broadcast_to(value, (1,) * (3 - value.ndim) + value.shape).reshape(np.shape(array))

    def _arguments(self, param, grad, state, hyperparameters, inputs=None) -> list:
        """The values of the inputs for one tensor, in ``self._inputs`` order."""
        # NumPy float64 scalars, not Python floats: Piecewise evaluates every branch, and an untaken branch may divide
        # by zero, which must give inf or nan (then discarded), not raise.
        scalars = {**self.defaults, **hyperparameters, "step": state["step"] + 1, "numel": max(np.size(param), 1)}
        ndim, slices, rows, cols = _factored_shape(np.shape(param))
        scalars.update(ndim=ndim, rows=max(rows, 1), cols=max(cols, 1))
        values = {name: value if isinstance(value, bool) else np.float64(value) for name, value in scalars.items()}
        shape = self._seen_as(np.shape(param))
        values.update(param=np.reshape(param, shape), grad=np.reshape(grad, shape))
        values.update((name, np.reshape(state[name], shape)) for name in self.state_names)
        values.update((name, np.reshape(np.asarray(array, np.float64), shape)) for name, array in (inputs or {}).items())
        values.update((name, np.reshape(state[name], (slices, rows, 1) if level == "row" else (slices, 1, cols)))
                      for name, level in self.vectors.items())
        values.update((s.name, np.float64(state[s.name])) for s, _ in self.variant.scalar_states)
        return [values[s.name] for s in self._inputs]


class _Logical:
    """A NumPy logical ufunc whose ``reduce`` takes operands of different shapes (scalars next to arrays)."""

    def __init__(self, ufunc):
        self.ufunc = ufunc

    def __call__(self, *operands):
        return self.ufunc(*operands)

    def reduce(self, operands):
        return functools.reduce(self.ufunc, operands)
