"""Lowering: split a checked variant into host blocks and element phases.

The host blocks hold everything that depends only on hyperparameters, the step, scalar state and reductions; they run
once per step in float64. The element phases are what runs per element, in the arrays' own precision (float32 or
float64), with every number and every scalar-only subexpression passed in from the host, so a float32 kernel contains no
float64 operation.

A variant without reductions has one phase, the update. A variant with reductions (LAMB's norms, StableAdamW's RMS) gets
reduce phases first: phase k sums the per-element expressions of the reductions that need only what is known before it;
the host then computes what depends on those sums; the last phase updates. Only the update phase writes: reduce phases
read, so a step that stops between phases changes nothing, and the update computes each new state from the old values
rather than reading back a stored one (which 16-bit storage would have rounded).
"""

from __future__ import annotations

import dataclasses

import sympy

from .spec import COL, ELEMENT, ROW, SLICE, ColsMean, ColSum, GroupSum, ReduceSum, RowsMean, RowSum, Variant, \
    _without_ite, cols, grad, level, ndim, numel, param, rows, step


class SliceMean(sympy.Function):
    """Host code: ``SliceMean(x, axis)``, the mean over each slice's rows (``axis`` 0) or columns (1) of ``x``, which
    has one value per row (column) of every tensor stepped together: one value per slice."""

    nargs = 2
    gives = SLICE


class GroupTotal(sympy.Function):
    """Host code: the total over the tensors stepped together of their sums ``r<k>`` (one per tensor)."""

    nargs = 1


@dataclasses.dataclass(frozen=True)
class Phase:
    """One pass over the elements.

    kernel_scalars: the host values this phase reads, in argument order.
    loads:          (local, array) pairs read at the start of each element.
    element:        CSE temporaries ``t<k>`` per element, in order.
    stores:         (array, value) pairs written at the end of each element; all reads precede all writes.
    sums:           (reduction symbol ``r<k>``, per-element value) pairs summed over the tensor (reduce phases only).
    zero:           a host scalar holding 0 in the arrays' dtype, to start the sums (reduce phases only).
    row_sums:       as ``sums``, summed along each row; col_sums: down each column.
    """

    kernel_scalars: tuple[sympy.Symbol, ...]
    loads: tuple[tuple[sympy.Symbol, sympy.Symbol], ...]
    element: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    stores: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    sums: tuple[tuple[sympy.Symbol, sympy.Expr], ...] = ()
    zero: sympy.Symbol | None = None
    row_sums: tuple[tuple[sympy.Symbol, sympy.Expr], ...] = ()
    col_sums: tuple[tuple[sympy.Symbol, sympy.Expr], ...] = ()


@dataclasses.dataclass(frozen=True)
class Lowered:
    """A variant lowered for code generation.

    host:            float64 assignments per host block: ``host[k]`` runs before phase k (after the sums of phase k-1).
    phases:          reduce phases, then the update phase (always last).
    flags:           the boolean kernel scalars.
    arrays:          the kernels' array arguments: parameter, gradient, states.
    scalar_updates:  (scalar, row or column state, host symbol holding its new value).
    levels:          the level (``adamgen.spec.SLICE``, ``ROW``, ``COL``) of every host symbol that has more than one
                     value per tensor; the others have one.
    """

    variant: Variant
    host: tuple[tuple[tuple[sympy.Symbol, sympy.Basic], ...], ...]
    phases: tuple[Phase, ...]
    flags: frozenset
    arrays: tuple[sympy.Symbol, ...]
    scalar_updates: tuple[tuple[sympy.Symbol, sympy.Symbol], ...]
    levels: dict = dataclasses.field(default_factory=dict)

    @property
    def update(self) -> Phase:
        return self.phases[-1]

    @property
    def host_inputs(self) -> frozenset:
        """The host inputs (step, numel, hyperparameters, scalar states) that some host line or kernel reads."""
        read = set().union(*(e.free_symbols for block in self.host for _, e in block))
        read |= set().union(*(p.kernel_scalars for p in self.phases))
        return frozenset(read & self.variant.host_symbols)


def lower(variant: Variant) -> Lowered:
    """Lower a checked variant. Pure and deterministic: the same variant always gives the same ``Lowered``.

    Guarantees: element expressions contain no number except integer and +-1/2 exponents and -1 coefficients; every
    scalar-only subexpression (and every scalar factor of a sum or product) is a host symbol; each host value is computed
    in the first host block where everything it reads is known; host code holds only what kernels and scalar-state
    updates need, named definitions in definition order first.
    """
    arrays = (param, grad, *(s for s, _ in variant.states), *variant.inputs)

    # Classify definitions: per-element ones (which read per-element values outside any reduction, or a row value and a
    # column value) are inlined where used; the others stay named host values, of one value per tensor, slice, row or
    # column. Each reduction becomes a host symbol r<k> of the level it gives.
    levels = {a: ELEMENT for a in arrays}
    levels.update({s: ROW for s, _ in variant.row_states})
    levels.update({s: COL for s, _ in variant.col_states})
    element_defs, scalar_defs, sums = {}, {}, {}

    def reduction(node):
        key = (node.gives, node.args[0])
        if key not in sums.values():
            r = sympy.Symbol(f"r{len(sums)}", real=True)
            sums[r] = key
            if key[0]:
                levels[r] = key[0]
        r = next(r for r, k in sums.items() if k == key)
        return GroupTotal(r) if isinstance(node, GroupSum) else r

    for symbol, expr in _live(variant):
        if level(expr, levels) == ELEMENT:
            element_defs[symbol] = expr
            levels[symbol] = ELEMENT
        else:
            expr = expr.replace(lambda e: isinstance(e, (ReduceSum, RowSum, ColSum)), reduction)
            expr = expr.replace(lambda e: isinstance(e, (RowsMean, ColsMean)),
                                lambda e: SliceMean(e.args[0], sympy.Integer(isinstance(e, ColsMean))))
            scalar_defs[symbol] = expr
            found = level(expr, levels)
            if found:
                levels[symbol] = found
    sums = {r: argument for r, (_, argument) in sums.items()}

    # When is each host value known? 0: before any pass; k: after the sums of phase k-1.
    ready = {s: 0 for s in (*variant.host_symbols, *arrays, *(s for s, _ in variant.row_states + variant.col_states))}

    def known_after(expr) -> int:
        return max((ready[s] for s in _inline(expr, element_defs).free_symbols), default=0)

    for symbol, expr in scalar_defs.items():
        for r in sorted(expr.free_symbols & set(sums) - set(ready), key=str):
            ready[r] = known_after(sums[r]) + 1
        ready[symbol] = known_after(expr)
    reduce_phases = max((ready[r] for r in sums), default=0)

    # Every array is written by the update pass only: a reduce pass writes nothing (a step that stops between passes
    # leaves every array as it was), and the update reads each new state as computed, never as stored and read back
    # (a 16-bit state would come back rounded).
    # A state whose new value is its old one (a state the rule only reads: Prodigy's p0) is not written at all; the
    # parameter always is (so that the update pass has a store).
    definitions = dict(variant.definitions)
    outputs = {target: new for target, new in variant.updates
               if target in arrays and (target == param or definitions[new] != target)}

    host_symbols = set(variant.host_symbols) | set(scalar_defs) | set(sums)
    host_symbols |= {s for s, _ in variant.row_states + variant.col_states}
    hoist = _Hoister(host_symbols, {s: lv for s, lv in levels.items() if lv != ELEMENT})
    phases = []
    for k in range(reduce_phases + 1):
        def lowered(expr):
            return hoist(_kernel_forms(_inline(expr, element_defs)))

        phase_sums = [(r, lowered(sums[r])) for r in sums if ready[r] == k + 1]
        stores = [(t, lowered(new)) for t, new in outputs.items()] if k == reduce_phases else []
        phases.append(_phase(hoist, arrays, stores, phase_sums, levels))

    # Host code: the named scalar definitions that are needed, in order, then the hoisted values, each in the first
    # host block where it can be computed.
    scalar_updates = tuple((s, new) for s, new in variant.updates if s not in arrays)
    needed = set().union(*(p.kernel_scalars for p in phases)) | {new for _, new in scalar_updates}
    needed |= set().union(*(e.free_symbols for p in phases for _, e in p.sums))
    for symbol, expr in reversed(hoist.assignments):
        if symbol in needed:
            needed |= expr.free_symbols
    for symbol in reversed(list(scalar_defs)):
        if symbol in needed:
            needed |= scalar_defs[symbol].free_symbols
    assignments = [(s, scalar_defs[s]) for s in scalar_defs if s in needed] + hoist.assignments
    for symbol, expr in hoist.assignments:
        ready[symbol] = max((ready.get(s, 0) for s in expr.free_symbols), default=0)
    levels.update(hoist.levels)  # the hoisted values' levels
    host = tuple(tuple((s, e) for s, e in assignments if ready[s] == k) for k in range(reduce_phases + 1))

    order = [step, numel, rows, cols, ndim, *(h for h, _ in variant.hyperparameters),
             *(s for s, _ in variant.scalar_states + variant.row_states + variant.col_states)]
    order += [s for s, _ in assignments]
    phases = [dataclasses.replace(p, kernel_scalars=tuple(sorted(p.kernel_scalars, key=order.index))) for p in phases]

    booleans = {h for h, default in variant.hyperparameters if isinstance(default, bool)}
    booleans |= {s for s, e in assignments  # a SymPy Symbol is a Boolean too: a number's alias (step_size = lr) is not
                 if isinstance(e, sympy.logic.boolalg.Boolean) and not (e.is_Symbol and e.is_real)}
    return Lowered(
        variant=variant,
        host=host,
        phases=tuple(phases),
        flags=frozenset(booleans & set().union(*(p.kernel_scalars for p in phases))),
        arrays=arrays,
        scalar_updates=scalar_updates,
        levels={s: lv for s, lv in levels.items() if s in host_symbols or s in hoist.symbols},
    )


def _live(variant: Variant) -> list:
    """The definitions that some update reads, directly or not: a dead one would cost host code, or a whole pass.
    Their Max and Min are lowering's own (``_Max``, ``_Min``), which SymPy rebuilds cheaply."""
    live = {new for _, new in variant.updates}
    for symbol, expr in reversed(variant.definitions):
        if symbol in live:
            live |= expr.free_symbols
    return [(symbol, _cheap_lattices(expr)) for symbol, expr in variant.definitions if symbol in live]


class _WithoutSearch:
    """Max and Min without SymPy's search for dominated arguments: it proves inequalities between the arguments at every
    rebuild (inlining, hoisting, CSE), milliseconds per node and more for large arguments. Arguments are still flattened
    and deduplicated; the classes carry SymPy's names, so sort keys and printed code are SymPy's."""

    @classmethod
    def _collapse_arguments(cls, args, **assumptions):
        return args

    @classmethod
    def _find_localzeros(cls, values, **options):
        return values


class _Max(_WithoutSearch, sympy.Max):
    pass


class _Min(_WithoutSearch, sympy.Min):
    pass


_Max.__name__, _Min.__name__ = "Max", "Min"


def _cheap_lattices(expr, memo=None):
    """``expr`` with every Max and Min as ``_Max`` and ``_Min``, rebuilt bottom-up (SymPy's ``replace`` would first
    rebuild each one the expensive way)."""
    memo = {} if memo is None else memo
    if expr.is_Atom:
        return expr
    if expr not in memo:
        args = [_cheap_lattices(arg, memo) for arg in expr.args]
        if isinstance(expr, sympy.Max):
            memo[expr] = _Max(*args)
        elif isinstance(expr, sympy.Min):
            memo[expr] = _Min(*args)
        else:
            memo[expr] = expr.func(*args) if args != list(expr.args) else expr
    return memo[expr]


def _inline(expr, definitions: dict):
    """``expr`` with every per-element definition replaced by its expression, recursively; a comparison that comes to
    hold a Piecewise becomes the logic of one comparison per branch (``_comparison``)."""
    while expr.free_symbols & definitions.keys():
        expr = _replaced(expr, definitions, {})
    return expr


def _replaced(expr, mapping: dict, memo: dict):
    """``expr.xreplace(mapping)``, rebuilt bottom-up, with each comparison rebuilt through ``_comparison``."""
    if expr in mapping:
        return mapping[expr]
    if expr.is_Atom:
        return expr
    if expr not in memo:
        args = [_replaced(arg, mapping, memo) for arg in expr.args]
        if args == list(expr.args):
            memo[expr] = expr
        elif isinstance(expr, sympy.core.relational.Relational):
            memo[expr] = _comparison(expr.func(*args))
        else:
            memo[expr] = expr.func(*args)
    return memo[expr]


def _comparison(relation):
    """A comparison of values that hold a Piecewise, as ``(c1 & v1) | (~c1 & c2 & v2) | ...`` over the branches of the
    folded comparison ``Piecewise((v1, c1), (v2, c2), ...)``. SymPy itself folds such a comparison into a Piecewise of
    conditions when it becomes a condition, and rewrites that as ITE, which drops every branch after one whose condition
    is a bare symbol (a flag, a condition definition): Piecewise((a, flag), (b, True)) > 0 would read a > 0."""
    if not relation.has(sympy.Piecewise):
        return relation
    folded = sympy.piecewise_fold(relation)
    if not isinstance(folded, sympy.Piecewise):
        return folded
    terms, earlier = [], []
    for value, condition in folded.args:
        terms.append(sympy.And(*(sympy.Not(c) for c in earlier), condition, value))
        earlier.append(condition)
    return sympy.Or(*terms)


def _phase(hoist, arrays, stores, sums, levels) -> Phase:
    """Read every array once into a local, then common-subexpression elimination with canonical numbering."""
    locals_ = {a: sympy.Symbol(f"{a}_i", real=True) for a in arrays}
    values = [e.xreplace(locals_) for _, e in stores] + [e.xreplace(locals_) for _, e in sums]
    names = sympy.numbered_symbols("t", real=True)
    temporaries, values = sympy.cse(values, symbols=names, order="canonical")
    temporaries, values = _power_bases(temporaries, values, names)
    temporaries = [(t, hoist.numerators(e)) for t, e in temporaries]
    values = [hoist.numerators(e) for e in values]
    zero = hoist.scalar(sympy.S.Zero) if sums else None
    used = set().union(*(e.free_symbols for e in values), *(e.free_symbols for _, e in temporaries))
    kernel_scalars = [s for s in used if s in hoist.host_symbols or s in hoist.symbols]
    if zero is not None and zero not in kernel_scalars:
        kernel_scalars.append(zero)
    summed = [(r, v) for (r, _), v in zip(sums, values[len(stores):])]
    return Phase(
        kernel_scalars=tuple(kernel_scalars),
        loads=tuple((locals_[a], a) for a in arrays if locals_[a] in used),
        element=tuple(temporaries),
        stores=tuple((t, v) for (t, _), v in zip(stores, values)),
        sums=tuple((r, v) for r, v in summed if r not in levels),
        zero=zero,
        row_sums=tuple((r, v) for r, v in summed if levels.get(r) == ROW),
        col_sums=tuple((r, v) for r, v in summed if levels.get(r) == COL),
    )


def _power_bases(temporaries, values, names):
    """Give each compound base of an integer power its own temporary: ``x**2`` prints as ``x*x``, which must not spell
    out a long ``x`` twice."""
    extracted = {}

    def extract(expr):
        def visit(node):
            if node.is_Pow and node.exp.is_Integer and abs(node.exp) > 1 and not node.base.is_Atom:
                base = visit(node.base)
                if base not in extracted:
                    extracted[base] = next(names)
                    result.append((extracted[base], base))
                return sympy.Pow(extracted[base], node.exp)
            return node if node.is_Atom else node.func(*(visit(a) for a in node.args))
        return visit(expr)

    result = []
    for symbol, expr in temporaries:
        expr = extract(expr)
        result.append((symbol, expr))
    values = [extract(v) for v in values]
    return result, values


def _kernel_forms(expr):
    """Rewrite functions that kernels compute with comparisons, so their constants get typed like any other number.

    sign(x) -> 1 if x > 0, -1 if x < 0, else x: keeps 0 and NaN, as torch.sign does.
    atan(x) -> atan2(x, 1), the form the kernels compute (SymPy writes atan2(y, x) as atan(y/x) when x > 0).
    ITE(a, b, c) -> (a & b) | (~a & c): SymPy makes an ITE when inlining puts a Piecewise into a comparison, and prints
    it with literal booleans."""
    expr = _without_ite(expr)
    expr = expr.replace(sympy.sign, lambda a: sympy.Piecewise((1, _comparison(a > 0)), (-1, _comparison(a < 0)),
                                                              (a, True)))
    return expr.replace(sympy.atan, lambda a: sympy.atan2(a, sympy.S.One, evaluate=False))  # last: nothing rebuilds it


MAX_PRODUCT_POWER = 8  # larger integer powers take their exponent as a typed scalar (a pow call, not a product)


class _Hoister:
    """Rewrites an element expression so that every scalar-only part is a host symbol ``c<k>`` (or a named host value).

    Equal scalar subtrees share one symbol, numbered in the order first met, so the output is deterministic."""

    def __init__(self, host_symbols: set, levels: dict | None = None):
        self.host_symbols = host_symbols
        self.levels = {} if levels is None else levels  # host symbols with one value per slice, row or column
        self.table: dict[sympy.Basic, sympy.Symbol] = {}
        self.assignments: list[tuple[sympy.Symbol, sympy.Basic]] = []

    @property
    def symbols(self) -> set:
        return set(self.table.values())

    def is_scalar(self, expr) -> bool:
        """Whether the host computes ``expr``: it reads host values only, and not a row value and a column value."""
        return expr.free_symbols <= self.host_symbols and (not self.levels or level(expr, self.levels) != ELEMENT)

    def scalar(self, expr) -> sympy.Symbol:
        """A host symbol holding the scalar ``expr``."""
        if expr in self.host_symbols:
            return expr
        if expr not in self.table:
            symbol = sympy.Symbol(f"c{len(self.table)}", real=True)
            self.table[expr] = symbol
            self.assignments.append((symbol, expr))
            found = level(expr, self.levels) if self.levels else None
            if found:
                self.levels[symbol] = found
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
        if isinstance(expr, sympy.Piecewise):  # hoist branch values and conditions, never a whole (value, condition) pair
            return sympy.Piecewise(*((self(value), self(condition)) for value, condition in expr.args))
        if expr.is_Pow:
            base, exponent = expr.args
            if (exponent.is_Integer and abs(exponent) <= MAX_PRODUCT_POWER) or exponent in (sympy.S.Half, -sympy.S.Half):
                return sympy.Pow(self(base), exponent)  # printed as a product, a square root or a quotient
            return sympy.Pow(self(base), self(exponent))
        return expr.func(*(self(arg) for arg in expr.args))

    def _split(self, expr):
        """Group the scalar factors of a product (terms of a sum) into one host value; where some have one value per
        column and others one per row, into two (the element then combines them)."""
        scalars = [a for a in expr.args if self.is_scalar(a)]
        rest = [self(a) for a in expr.args if not self.is_scalar(a)]
        groups = [scalars]
        if self.levels and level(sympy.Add(*scalars), self.levels) == ELEMENT:
            by_column = [a for a in scalars if "col" in level(a, self.levels)]
            groups = [[a for a in scalars if a not in by_column], by_column]
        if expr.is_Add:
            constants = [sympy.Add(*group) for group in groups]
            body = sympy.Add(*rest)
            return sympy.Add(*(self.scalar(c) for c in constants if c != 0), body)
        coefficients = [sympy.Mul(*group) for group in groups]
        body = sympy.Mul(*rest)
        if len(coefficients) == 1 and coefficients[0] in (1, -1):
            return coefficients[0] * body
        return sympy.Mul(*(self.scalar(c) for c in coefficients if c != 1), body)

    def numerators(self, expr, factor: bool = False):
        """Give every quotient with no numerator a typed one: ``1/x`` would be an integer literal in the kernel.

        ``factor`` is true for the factors of a product, which share the product's numerator."""
        if expr.is_Atom:
            return expr
        lone = _is_reciprocal(expr) or (expr.is_Mul and all(_is_reciprocal(a) or a == -1 for a in expr.args))
        if expr.is_Mul:
            expr = sympy.Mul(*(self.numerators(a, factor=True) for a in expr.args))
        elif expr.is_Pow:
            expr = sympy.Pow(self.numerators(expr.base), expr.exp)
        else:
            expr = expr.func(*(self.numerators(a) for a in expr.args))
        return self.scalar(sympy.S.One) * expr if lone and not factor else expr


def _is_reciprocal(expr) -> bool:
    return expr.is_Pow and expr.exp.is_number and expr.exp.is_negative
