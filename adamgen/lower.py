"""Lowering: split a checked variant into a host block and an element block.

The host block holds everything that depends only on hyperparameters, the step and scalar state; it runs once per step in
float64. The element block is what runs per element, in the arrays' own precision (float32 or float64), with every number
and every scalar-only subexpression passed in from the host, so a float32 kernel contains no float64 operation.
"""

from __future__ import annotations

import dataclasses

import sympy

from .spec import Variant, grad, param, step


@dataclasses.dataclass(frozen=True)
class Lowered:
    """A variant lowered for code generation.

    host:            float64 assignments, in order, run once per step (named scalar definitions, then hoisted ``c<k>``).
    kernel_scalars:  the host values the element block reads, in argument order; ``flags`` are the boolean ones.
    arrays:          the kernel's array arguments: parameter, gradient, states.
    loads:           (local, array) pairs read at the start of each element.
    element:         CSE temporaries ``t<k>`` per element, in order.
    stores:          (array, value) pairs written at the end of each element; all reads precede all writes.
    scalar_updates:  (scalar state, host symbol holding its new value).
    """

    variant: Variant
    host: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    kernel_scalars: tuple[sympy.Symbol, ...]
    flags: frozenset
    arrays: tuple[sympy.Symbol, ...]
    loads: tuple[tuple[sympy.Symbol, sympy.Symbol], ...]
    element: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    stores: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    scalar_updates: tuple[tuple[sympy.Symbol, sympy.Symbol], ...]


def lower(variant: Variant) -> Lowered:
    """Lower a checked variant. Pure and deterministic: the same variant always gives the same ``Lowered``.

    Guarantees: element expressions contain no number except integer and +-1/2 exponents and -1 coefficients; every
    scalar-only subexpression (and every scalar factor of a sum or product) is a host symbol; host code is in
    definition order and holds only what the element block or the scalar-state updates need.
    """
    # Classify definitions: per-element ones are inlined, scalar ones stay named host values.
    element_defs, scalar_defs = {}, {}
    element_symbols = set(variant.element_symbols)
    for symbol, expr in variant.definitions:
        expr = expr.xreplace(element_defs)
        if expr.free_symbols & element_symbols:
            element_defs[symbol] = expr
        else:
            scalar_defs[symbol] = expr
    host_symbols = set(variant.host_symbols) | set(scalar_defs)

    # Hoist scalar-only subtrees to the host (reduce the flops per element and keep literals out of kernels).
    hoist = _Hoister(host_symbols)
    arrays = (param, grad, *(s for s, _ in variant.states))
    outputs = [(target, hoist(_kernel_forms(element_defs.get(new, new)))) for target, new in variant.updates
               if target in arrays]

    # Read every array once into a local, then common-subexpression elimination with canonical numbering.
    locals_ = {a: sympy.Symbol(f"{a}_i", real=True) for a in arrays}
    values = [expr.xreplace(locals_) for _, expr in outputs]
    temporaries, values = sympy.cse(values, symbols=sympy.numbered_symbols("t", real=True), order="canonical")
    temporaries = [(t, hoist.numerators(e)) for t, e in temporaries]
    values = [hoist.numerators(e) for e in values]
    used = set().union(*(e.free_symbols for e in values), *(e.free_symbols for _, e in temporaries))
    loads = tuple((locals_[a], a) for a in arrays if locals_[a] in used)

    # Host code: the named scalar definitions that are needed, in order, then the hoisted values.
    scalar_updates = tuple((s, new) for s, new in variant.updates if s not in arrays)
    kernel_scalars = [s for s in used if s in host_symbols or s in hoist.symbols]
    needed = set(kernel_scalars) | {new for _, new in scalar_updates}
    for symbol, expr in reversed(hoist.assignments):
        if symbol in needed:
            needed |= expr.free_symbols
    for symbol in reversed(list(scalar_defs)):
        if symbol in needed:
            needed |= scalar_defs[symbol].free_symbols
    host = [(s, variant.definition(s)) for s in scalar_defs if s in needed] + hoist.assignments
    order = [step, *(h for h, _ in variant.hyperparameters), *(s for s, _ in variant.scalar_states)]
    order += [s for s, _ in host]
    kernel_scalars.sort(key=order.index)

    booleans = {h for h, default in variant.hyperparameters if isinstance(default, bool)}
    booleans |= {s for s, e in host if isinstance(e, sympy.logic.boolalg.Boolean)}
    return Lowered(
        variant=variant,
        host=tuple(host),
        kernel_scalars=tuple(kernel_scalars),
        flags=frozenset(booleans & set(kernel_scalars)),
        arrays=arrays,
        loads=loads,
        element=tuple(temporaries),
        stores=tuple((target, value) for (target, _), value in zip(outputs, values)),
        scalar_updates=scalar_updates,
    )


def _kernel_forms(expr):
    """Rewrite functions that kernels compute with comparisons, so their constants get typed like any other number.

    sign(x) -> 1 if x > 0, -1 if x < 0, else x: keeps 0 and NaN, as torch.sign does."""
    return expr.replace(sympy.sign, lambda a: sympy.Piecewise((1, a > 0), (-1, a < 0), (a, True)))


class _Hoister:
    """Rewrites an element expression so that every scalar-only part is a host symbol ``c<k>`` (or a named host value).

    Equal scalar subtrees share one symbol, numbered in the order first met, so the output is deterministic."""

    def __init__(self, host_symbols: set):
        self.host_symbols = host_symbols
        self.table: dict[sympy.Basic, sympy.Symbol] = {}
        self.assignments: list[tuple[sympy.Symbol, sympy.Basic]] = []

    @property
    def symbols(self) -> set:
        return set(self.table.values())

    def is_scalar(self, expr) -> bool:
        return expr.free_symbols <= self.host_symbols

    def scalar(self, expr) -> sympy.Symbol:
        """A host symbol holding the scalar ``expr``."""
        if expr in self.host_symbols:
            return expr
        if expr not in self.table:
            symbol = sympy.Symbol(f"c{len(self.table)}", real=True)
            self.table[expr] = symbol
            self.assignments.append((symbol, expr))
        return self.table[expr]

    def __call__(self, expr):
        if isinstance(expr, (sympy.logic.boolalg.BooleanTrue, sympy.logic.boolalg.BooleanFalse)):
            return expr
        if self.is_scalar(expr):
            return self.scalar(expr)
        if expr.is_Symbol:
            return expr
        if expr.is_Mul or expr.is_Add:
            return self._split(expr)
        if expr.is_Pow:
            base, exponent = expr.args
            if exponent.is_Integer or exponent in (sympy.S.Half, -sympy.S.Half):
                power = sympy.Pow(self(base), exponent)
            else:
                power = sympy.Pow(self(base), self(exponent))
            return power
        return expr.func(*(self(arg) for arg in expr.args))

    def _split(self, expr):
        """Group the scalar factors of a product (terms of a sum) into one host value."""
        scalars = [a for a in expr.args if self.is_scalar(a)]
        rest = [self(a) for a in expr.args if not self.is_scalar(a)]
        if expr.is_Add:
            constant = sympy.Add(*scalars)
            body = sympy.Add(*rest)
            return body if constant == 0 else sympy.Add(self.scalar(constant), body)
        coefficient = sympy.Mul(*scalars)
        body = sympy.Mul(*rest)
        if coefficient in (1, -1):
            return coefficient * body
        return sympy.Mul(self.scalar(coefficient), body)

    def numerators(self, expr):
        """Give every quotient with no numerator a typed one: ``1/x`` would be an integer literal in the kernel."""
        if expr.is_Atom:
            return expr
        if _is_reciprocal(expr) or (expr.is_Mul and all(_is_reciprocal(a) or a == -1 for a in expr.args)):
            return self.scalar(sympy.S.One) * expr
        return expr.func(*(self.numerators(arg) for arg in expr.args))


def _is_reciprocal(expr) -> bool:
    return expr.is_Pow and expr.exp.is_number and expr.exp.is_negative
