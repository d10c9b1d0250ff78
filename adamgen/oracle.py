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

from .transforms import maximize
from .variants import as_variant


class Oracle:
    """``Oracle(spec_or_variant)`` with ``init(param)`` and ``step(param, grad, state, **hyperparameters)``, in float64."""

    def __init__(self, spec):
        self.variant = maximize(as_variant(spec))
        self.name = self.variant.name
        self.defaults = {h.name: d for h, d in self.variant.hyperparameters}
        self.state_names = tuple(s.name for s, _ in self.variant.states)
        self._inputs = sorted(self.variant.element_symbols | self.variant.host_symbols, key=str)
        self._functions = []
        self._shape = ()
        functions = {"ReduceSum": lambda values: np.sum(np.broadcast_to(values, self._shape), dtype=np.float64),
                     # SymPy prints And/Or as logical_and.reduce((a, b)), which fails on a scalar next to an array
                     "logical_and": _Logical(np.logical_and), "logical_or": _Logical(np.logical_or)}
        known = list(self._inputs)
        for symbol, expr in self.variant.definitions:
            self._functions.append((symbol, sympy.lambdify(known, expr, modules=[functions, "numpy"])))
            known.append(symbol)

    def init(self, param) -> dict:
        state = {"step": 0}
        state.update({s.name: np.full(np.shape(param), init, np.float64) for s, init in self.variant.states})
        state.update({s.name: init for s, init in self.variant.scalar_states})
        return state

    def step(self, param, grad, state, **hyperparameters) -> None:
        """Advance ``param`` (a float64 array) and ``state`` in place by one step."""
        unknown = set(hyperparameters) - set(self.defaults)
        if unknown:
            raise TypeError(f"{self.name}: unknown hyperparameter(s) {', '.join(sorted(unknown))}")
        self._shape = np.shape(param)
        # NumPy float64 scalars, not Python floats: Piecewise evaluates every branch, and an untaken branch may divide
        # by zero, which must give inf or nan (then discarded), not raise.
        scalars = {**self.defaults, **hyperparameters, "step": state["step"] + 1, "numel": max(np.size(param), 1)}
        values = {name: value if isinstance(value, bool) else np.float64(value) for name, value in scalars.items()}
        values.update(param=param, grad=grad)
        values.update((name, state[name]) for name in self.state_names)
        values.update((s.name, np.float64(state[s.name])) for s, _ in self.variant.scalar_states)
        args = [values[s.name] for s in self._inputs]
        with np.errstate(invalid="ignore", divide="ignore"):  # Piecewise evaluates its branches everywhere
            for symbol, function in self._functions:
                result = function(*args)
                args.append(result)
                values[symbol.name] = result
        # Copies, all taken before any write: a new value may be an input array itself (prev_grad_new = param).
        new_values = [(target, np.array(values[new.name], np.float64)) for target, new in self.variant.updates]
        for target, value in new_values:
            if target.name == "param":
                param[...] = value
            elif target.name in self.state_names:
                state[target.name][...] = value
            else:
                state[target.name] = float(value)
        state["step"] += 1


class _Logical:
    """A NumPy logical ufunc whose ``reduce`` takes operands of different shapes (scalars next to arrays)."""

    def __init__(self, ufunc):
        self.ufunc = ufunc

    def __call__(self, *operands):
        return self.ufunc(*operands)

    def reduce(self, operands):
        return functools.reduce(self.ufunc, operands)
