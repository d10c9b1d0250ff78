"""The spec language: an optimizer's update rule written as SymPy expressions.

A spec declares the per-element tensors (the parameter, its gradient and state tensors), the per-tensor scalar state, the
hyperparameters and the step counter, then gives the new value of every state and of the parameter::

    from adamgen.spec import Spec, grad, param, sqrt, step

    spec = Spec("adamw", reference="torch.optim.AdamW")
    lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(
        lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2)
    exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
    bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
    bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
    m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * grad)
    v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * grad**2)
    spec.update(param, param * (1 - lr * weight_decay)
                - lr / bias_correction1 * m / (sqrt(v / bias_correction2) + eps))

Right-hand sides read the old values of every symbol; ``spec.update`` returns a symbol (``exp_avg_new``) that stands for the
new value, so a rule that needs a new value says so explicitly. ``validate`` turns the builder into a frozen, checked
``Variant``, the value every later stage of the compiler works on.
"""

from __future__ import annotations

import dataclasses
import functools
import builtins
import hashlib
import keyword
import math
import numbers
import re
import unicodedata
from typing import Iterable

import sympy
from sympy import Abs, Max, Min, Piecewise, atan2, exp, log, sign, sqrt  # noqa: F401  (re-exported for spec files)

from .errors import SpecError

# The symbols every spec shares. `param` and `grad` are per element; `step` is the step counter (1 on the first step);
# `numel` is the tensor's element count (taken as 1 for an empty tensor, so a mean over no elements is 0).
param = sympy.Symbol("param", real=True)
grad = sympy.Symbol("grad", real=True)
step = sympy.Symbol("step", integer=True, positive=True)
numel = sympy.Symbol("numel", integer=True, positive=True)
# A tensor's shape as the row/column reductions see it: `rows` and `cols` are the sizes of its last two dimensions
# (`rows` 1 for a tensor of one dimension, both 1 for a 0-d one) and `ndim` its number of dimensions; the dimensions
# before the last two make slices, each with its own rows and columns.
rows = sympy.Symbol("rows", integer=True, positive=True)
cols = sympy.Symbol("cols", integer=True, positive=True)
ndim = sympy.Symbol("ndim", integer=True, nonnegative=True)


# Levels: how many values a symbol or an expression has per tensor, as the set of axes it varies along. One per tensor
# (hyperparameters, the step, scalar states, sums over the tensor), one per slice (the mean of a row state), one per row
# (row states, row sums), one per column, one per element (where row and column meet).
HOST, SLICE = frozenset(), frozenset({"slice"})
ROW, COL = SLICE | {"row"}, SLICE | {"col"}
ELEMENT = ROW | COL
LEVEL_NAMES = {HOST: "tensor", SLICE: "slice", ROW: "row", COL: "column", ELEMENT: "element"}


class ReduceSum(sympy.Function):
    """The sum over all elements of one tensor of a per-element expression: a per-tensor scalar.

    Written with ``Spec.sum``, ``Spec.mean`` and ``Spec.norm``. Lowering splits a variant that uses one into phases: a
    pass that reduces, then the elementwise update."""

    nargs = 1
    gives = HOST  # the level of the result (``level``)


class GroupSum(ReduceSum):
    """The sum of a per-element expression over every element of every tensor stepped together: the tensors of one
    ``step_many`` / ``step_tables`` call (in ``adamgen.torch``, a param group's tensors), the one tensor for ``step``.

    Written with ``Spec.group_sum`` and ``Spec.group_norm`` (a global gradient norm for clipping). Each tensor's sum is
    taken as for ``ReduceSum``; the host adds them up."""


class RowSum(sympy.Function):
    """The sum of a per-element expression along each row (over the last dimension): one value per row, which an
    element reads as its row's. Written with ``Spec.row_sum`` and ``Spec.row_mean``."""

    nargs = 1
    gives = ROW

    def _latex(self, printer):
        return r"\sum_{\mathrm{row}} \left(%s\right)" % printer._print(self.args[0])


class ColSum(sympy.Function):
    """The sum of a per-element expression down each column (over the second-to-last dimension, per slice): one value
    per column. Written with ``Spec.col_sum`` and ``Spec.col_mean``."""

    nargs = 1
    gives = COL

    def _latex(self, printer):
        return r"\sum_{\mathrm{column}} \left(%s\right)" % printer._print(self.args[0])


class RowsMean(sympy.Function):
    """The mean over the rows of each slice of a value with one value per row (a row state, a row sum): one value per
    slice. Written with ``Spec.rows_mean`` (Adafactor's ``row_var.mean(dim=-2)``)."""

    nargs = 1
    gives = SLICE

    def _latex(self, printer):
        return r"\operatorname{mean}_{\mathrm{rows}} \left(%s\right)" % printer._print(self.args[0])


class ColsMean(sympy.Function):
    """The mean over the columns of each slice of a value with one value per column. Written with ``Spec.cols_mean``."""

    nargs = 1
    gives = SLICE

    def _latex(self, printer):
        return r"\operatorname{mean}_{\mathrm{columns}} \left(%s\right)" % printer._print(self.args[0])


FACTORED_NODES = (RowSum, ColSum, RowsMean, ColsMean)



def level(expr, levels: dict) -> frozenset:
    """The level of ``expr``, given the levels of the symbols it reads (``levels``; others are per tensor)."""
    if isinstance(expr, sympy.Symbol):
        return levels.get(expr, HOST)
    gives = getattr(type(expr), "gives", None)  # a reduction: the level of its result, whatever it reduces
    if gives is not None:
        return gives
    return frozenset().union(*(level(arg, levels) for arg in expr.args))


class Stored(sympy.Function):
    """A value as the parameter's array holds it once stored: rounded to the parameter's format (bfloat16, float16),
    unchanged for float32 and float64 arrays and in exact arithmetic (the float64 oracle). What a compensated update
    reads to learn the rounding error of its store (the ``kahan`` option)."""

    nargs = 1


class RandomlyStored(sympy.Function):
    """``RandomlyStored(x, seed, step)``: x rounded stochastically to the parameter array's format where that is
    bfloat16 (16 random bits added below the kept ones, then truncated: rounded up with a probability equal to the
    fraction of an ulp that x lies above the lower neighbour), as ``Stored`` for any other format. The bits are a hash of (seed,
    step, the tensor's index in the call, the element's index), the same on every target. Exact arithmetic (the
    float64 oracle) sees x."""

    nargs = 3


class HighHalf(sympy.Function):
    """``HighHalf(x)``: what a bfloat16 parameter keeps of the float32 x when a remainder state keeps the rest
    (``master_weights``): x's high 16 bits, rounded up where the low 16 bits are 0x8000 or more (so that the parameter
    is x to nearest, ties away from zero). x itself for a parameter of any other format, and in exact arithmetic.

    A state whose new value is a ``LowHalf`` is a remainder (``Variant.remainders``): the kernels then read the
    parameter as the float32 value that it and the remainder hold together, wherever the rule reads ``param``."""

    nargs = 1


class LowHalf(sympy.Function):
    """``LowHalf(x)``: the remainder state's new value, the low 16 bits of the float32 x as an int16, where the parameter
    is bfloat16 (``HighHalf`` keeps the rest); zero otherwise, and in exact arithmetic."""

    nargs = 1


class Evaluated(sympy.Function):
    """Its argument, computed on its own before the terms around it: the kernels keep its parentheses where SymPy
    would merge a sum into the sum around it. Exact arithmetic does not see it."""

    nargs = 1


def outer_symbols(expr) -> set:
    """The free symbols of ``expr`` outside any reduction (what decides whether it has one value per element)."""
    inner = (ReduceSum, *FACTORED_NODES)
    return expr.replace(lambda e: isinstance(e, inner), lambda e: sympy.S.Zero).free_symbols \
        if expr.has(*inner) else expr.free_symbols


# Names a generated module uses for itself, so a spec may not take them: Python's builtins (the generated code calls
# max, min, abs, bool, float, range, ...), and what the code generation targets name (adamgen.targets: the modules'
# imports, constants and functions, the locals of the host functions and of the kernels). The table and the name
# families below are read by `reserved` only.
_RESERVED_NAMES = {name: "a Python builtin" for name in dir(builtins)}
_RESERVED_FAMILIES = (
    (re.compile(r"_"), "a leading underscore marks the generated module's private names"),
    (re.compile(r"[ctr]\d+$"), "c<k>, t<k> and r<k> name hoisted scalars, element temporaries and reductions"),
)
# Locals the kernels derive from each array's name: <array>_i holds the element loaded from it, <array>_block its block
# in a reduce pass.
_ARRAY_LOCALS = ("{}_i", "{}_block")


@functools.cache
def _generated_names() -> frozenset:
    from .targets import reserved_names  # the targets' printers import this module: read them once validation runs

    return reserved_names()


def reserved(name: str, arrays: Iterable[str] = ()) -> str | None:
    """Why ``name`` is reserved in a generated module whose kernels take the arrays named ``arrays`` (the parameter, the
    gradient and the state tensors), or None if a spec may use it. ``name`` is compared as Python reads it (NFKC)."""
    name = unicodedata.normalize("NFKC", name)
    if keyword.iskeyword(name):
        return "a Python keyword"
    if name in _RESERVED_NAMES:
        return _RESERVED_NAMES[name]
    if name in _generated_names():
        return "a name the generated module uses for itself (a module, a constant, a function or a local)"
    for pattern, why in _RESERVED_FAMILIES:
        if pattern.match(name):
            return why
    for array in arrays:
        for local in _ARRAY_LOCALS:
            if name == local.format(array):
                return f"the kernels' local for array {array}"
    return None


# Bounds on a spec, so that validation, code generation and compilation take seconds and stay clear of the recursion
# limits of SymPy and of Python's parser. Expressions are measured as the kernels compute them: with every per-element
# definition written out where it is used. The largest built-ins have 102 nodes (nadam), depth 19 (clamb), 5 states.
MAX_NAME_LENGTH = 64      # characters of a symbol's name; bytes (UTF-8) of the variant's, which names files
MAX_DEPTH = 64            # nesting depth of one expression
MAX_NODES = 2000          # nodes of one expression
MAX_TOTAL_NODES = 5000    # nodes of the new values and scalar definitions together
MAX_ATAN2 = 16            # calls of atan2 and atan together (float32: ~1 s of Numba compilation each)
MAX_NESTED_COMPARISONS = 2  # a comparison or sign inside the operand of another (SymPy's cost grows exponentially)
MAX_DECLARATIONS = 256    # hyperparameters, states, scalar states and definitions together
MAX_STATES = 32           # state tensors (each is a kernel argument)
MAX_EXPONENT = 1024       # numerator and denominator of a rational exponent (SymPy computes powers of numbers exactly)

# Expression node types the printers of every target support.
SUPPORTED_NODES = (
    sympy.Symbol, sympy.Integer, sympy.Rational, sympy.Float, sympy.Add, sympy.Mul, sympy.Pow, Abs, Max, Min, sign,
    exp, log, atan2, sympy.atan, Piecewise, ReduceSum, *FACTORED_NODES, Stored, RandomlyStored, Evaluated,
    HighHalf, LowHalf,
    sympy.core.relational.Relational,
    sympy.logic.boolalg.BooleanTrue, sympy.logic.boolalg.BooleanFalse, sympy.And, sympy.Or, sympy.Not,
    sympy.functions.elementary.piecewise.ExprCondPair,
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A checked spec: every symbol declared, every state updated, every expression printable.

    ``definitions`` are ordered so that each one reads only declared symbols and earlier definitions; ``updates`` maps each
    updated symbol (the parameter, every state, every scalar state) to the definition that holds its new value.
    """

    name: str
    hyperparameters: tuple[tuple[sympy.Symbol, object], ...]
    states: tuple[tuple[sympy.Symbol, float], ...]
    scalar_states: tuple[tuple[sympy.Symbol, float], ...]
    definitions: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    updates: tuple[tuple[sympy.Symbol, sympy.Symbol], ...]
    doc: str = ""
    reference: str = ""
    inputs: tuple[sympy.Symbol, ...] = ()  # per-element arrays each step is given, never written (Spec.input)
    row_states: tuple[tuple[sympy.Symbol, float], ...] = ()  # one float64 value per row: shaped [..., rows, 1]
    col_states: tuple[tuple[sympy.Symbol, float], ...] = ()  # one float64 value per column: shaped [..., 1, cols]

    @property
    def factored(self) -> bool:
        """Whether the rule has row or column states or reductions (``Spec.row_state``, ``Spec.row_sum``, ...)."""
        return bool(self.row_states or self.col_states) or any(
            e.has(*FACTORED_NODES) or e.free_symbols & {rows, cols, ndim} for _, e in self.definitions)

    @property
    def levels(self) -> dict:
        """The level (``HOST``, ``SLICE``, ``ROW``, ``COL``, ``ELEMENT``) of every symbol that does not have one
        value per tensor: the per-element ones, row and column states and the definitions that read them."""
        levels = {s: ELEMENT for s in self.element_symbols}
        levels.update({s: ROW for s, _ in self.row_states})
        levels.update({s: COL for s, _ in self.col_states})
        for symbol, expr in self.definitions:
            found = level(expr, levels)
            if found:
                levels[symbol] = found
        return levels

    @property
    def element_symbols(self) -> frozenset:
        """Symbols with one value per element: the parameter, the gradient, the state tensors and the inputs."""
        return frozenset([param, grad, *(s for s, _ in self.states), *self.inputs])

    @property
    def host_symbols(self) -> frozenset:
        """Symbols with one value per tensor and step: hyperparameters, the step, numel and the scalar states."""
        return frozenset([step, numel, *(h for h, _ in self.hyperparameters), *(s for s, _ in self.scalar_states)]
                         + ([rows, cols, ndim] if self.factored else []))

    @property
    def remainders(self) -> tuple[sympy.Symbol, ...]:
        """The states that hold the low halves of float32 parameters kept as bfloat16 (``HighHalf``): those whose new
        value is a ``LowHalf``."""
        definitions = dict(self.definitions)
        return tuple(s for s, new in self.updates if isinstance(definitions[new], LowHalf))

    def definition(self, symbol: sympy.Symbol) -> sympy.Expr:
        return dict(self.definitions)[symbol]

    def new_value(self, target: sympy.Symbol) -> sympy.Symbol:
        """The symbol that holds the new value of ``target``."""
        return dict(self.updates)[target]

    def rule(self) -> list[str]:
        """The update rule as readable lines: each definition, then each assignment."""
        lines = [f"{name} = {sympy.sstr(expr)}" for name, expr in self.definitions]
        lines += [f"{target} <- {new}" for target, new in self.updates]
        return lines

    def content_hash(self) -> str:
        """A sha256 of the variant's exact content (names, defaults, expressions), stable across runs and machines."""
        parts = [self.name, repr([(str(h), d) for h, d in self.hyperparameters]),
                 repr([(str(s), v) for s, v in self.states]), repr([(str(s), v) for s, v in self.scalar_states])]
        if self.row_states or self.col_states:
            parts += [repr([(str(s), v) for s, v in self.row_states]), repr([(str(s), v) for s, v in self.col_states])]
        if self.inputs:
            parts.append(repr([str(s) for s in self.inputs]))
        parts += [f"{name}={sympy.srepr(expr)}" for name, expr in self.definitions]
        parts += [f"{target}<-{new}" for target, new in self.updates]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class Spec:
    """Builder for a variant's update rule; see the module docstring for an example."""

    def __init__(self, name: str, *, doc: str = "", reference: str = ""):
        self.name = name
        self.doc = doc
        self.reference = reference
        self._hyperparameters: list[tuple[sympy.Symbol, object]] = []
        self._states: list[tuple[sympy.Symbol, float]] = []
        self._scalar_states: list[tuple[sympy.Symbol, float]] = []
        self._inputs: list[sympy.Symbol] = []
        self._row_states: list[tuple[sympy.Symbol, float]] = []
        self._col_states: list[tuple[sympy.Symbol, float]] = []
        self._definitions: list[tuple[sympy.Symbol, object]] = []
        self._updates: list[tuple[object, sympy.Symbol]] = []

    def hyperparameter(self, name: str, default) -> sympy.Symbol:
        """Declare a hyperparameter with its default; ``step(...)`` takes it as a keyword argument."""
        symbol = _symbol("hyperparameter", name, real=True)
        self._hyperparameters.append((symbol, default))
        return symbol

    def hyperparameters(self, **defaults) -> tuple[sympy.Symbol, ...]:
        """Declare several hyperparameters at once, in keyword order."""
        return tuple(self.hyperparameter(name, default) for name, default in defaults.items())

    def state(self, name: str, init=0.0) -> sympy.Symbol:
        """Declare a state tensor, one value per element, filled with ``init`` when the optimizer starts; with
        ``init=param``, a copy of the parameter (in the parameter's dtype: Prodigy's starting point ``p0``)."""
        symbol = _symbol("state", name, real=True)
        self._states.append((symbol, init))
        return symbol

    def states(self, *names: str) -> tuple[sympy.Symbol, ...]:
        """Declare several zero-initialised state tensors."""
        return tuple(self.state(name) for name in names)

    def scalar_state(self, name: str, init: float) -> sympy.Symbol:
        """Declare a per-tensor scalar state, kept on the host in float64 (NAdam's running product)."""
        symbol = _symbol("scalar state", name, real=True)
        self._scalar_states.append((symbol, init))
        return symbol

    def input(self, name: str) -> sympy.Symbol:
        """Declare an input: a per-element array shaped like the parameter that each step is given and the rule only
        reads (NumPy: ``step(..., name=array)``, ``step_many(..., name=[arrays])``; adamgen.torch: the tensor at
        ``optimizer.state[param][name]``, set before the step). Never written."""
        symbol = _symbol("input", name, real=True)
        self._inputs.append(symbol)
        return symbol

    def row_state(self, name: str, init: float = 0.0) -> sympy.Symbol:
        """Declare a row state: one value per row of the last two dimensions, shaped ``[..., rows, 1]`` (a tensor of
        one dimension is one row), kept on the host in float64 (Adafactor's ``row_var``). An element reads its row's
        value; its update may read only values with one value per row (row states, row sums, per-tensor values)."""
        symbol = _symbol("row state", name, real=True)
        self._row_states.append((symbol, init))
        return symbol

    def col_state(self, name: str, init: float = 0.0) -> sympy.Symbol:
        """Declare a column state: one value per column, shaped ``[..., 1, cols]`` (Adafactor's ``col_var``; for a
        tensor of one dimension, one value per element, so that it holds what an unfactored second moment would)."""
        symbol = _symbol("column state", name, real=True)
        self._col_states.append((symbol, init))
        return symbol

    def define(self, name: str, expr) -> sympy.Symbol:
        """Name an intermediate value (a number, or a condition such as ``rho_t > 5``).

        A scalar one keeps its name in the generated host code."""
        is_condition = isinstance(expr, sympy.logic.boolalg.Boolean) and not isinstance(expr, sympy.Symbol)
        symbol = _symbol("definition", name) if is_condition else _symbol("definition", name, real=True)
        self._definitions.append((symbol, expr))
        return symbol

    def sum(self, name: str, expr) -> sympy.Symbol:
        """Name the sum of a per-element expression over the whole tensor."""
        return self.define(name, ReduceSum(_summand(name, expr)))

    def mean(self, name: str, expr) -> sympy.Symbol:
        """Name the mean of a per-element expression over the tensor (0 for an empty tensor)."""
        return self.define(name, ReduceSum(_summand(name, expr)) / numel)

    def norm(self, name: str, expr) -> sympy.Symbol:
        """Name the Euclidean norm over the tensor of a per-element expression."""
        return self.define(name, sympy.sqrt(ReduceSum(_summand(name, expr)**2)))

    def row_sum(self, name: str, expr) -> sympy.Symbol:
        """Name the sum along each row (the last dimension) of a per-element expression: one value per row."""
        return self.define(name, RowSum(_summand(name, expr)))

    def row_mean(self, name: str, expr) -> sympy.Symbol:
        """Name the mean along each row of a per-element expression (torch's ``x.mean(dim=-1, keepdim=True)``)."""
        return self.define(name, RowSum(_summand(name, expr)) / cols)

    def col_sum(self, name: str, expr) -> sympy.Symbol:
        """Name the sum down each column (the second-to-last dimension) of a per-element expression."""
        return self.define(name, ColSum(_summand(name, expr)))

    def col_mean(self, name: str, expr) -> sympy.Symbol:
        """Name the mean down each column of a per-element expression (torch's ``x.mean(dim=-2, keepdim=True)``)."""
        return self.define(name, ColSum(_summand(name, expr)) / rows)

    def rows_mean(self, name: str, expr) -> sympy.Symbol:
        """Name the mean over the rows of each slice of a value with one value per row: one value per slice."""
        return self.define(name, RowsMean(_summand(name, expr)))

    def cols_mean(self, name: str, expr) -> sympy.Symbol:
        """Name the mean over the columns of each slice of a value with one value per column."""
        return self.define(name, ColsMean(_summand(name, expr)))

    def group_sum(self, name: str, expr) -> sympy.Symbol:
        """Name the sum of a per-element expression over every tensor stepped together (see ``GroupSum``)."""
        return self.define(name, GroupSum(_summand(name, expr)))

    def group_norm(self, name: str, expr) -> sympy.Symbol:
        """Name the Euclidean norm of a per-element expression over every tensor stepped together: with ``grad``, the
        global gradient norm that clipping reads."""
        return self.define(name, sympy.sqrt(GroupSum(_summand(name, expr)**2)))

    def update(self, target, expr) -> sympy.Symbol:
        """Give the new value of ``target`` (the parameter, a state or a scalar state).

        Returns the symbol ``<target>_new`` for the new value, for rules that read it (Adam's update reads the new moments).
        """
        new = self.define(f"{target.name if isinstance(target, sympy.Symbol) else _show(target)}_new", expr)
        self._updates.append((target, new))
        return new


def _summand(name, expr) -> sympy.Expr:
    """The per-element expression of a reduction, checked before SymPy's arithmetic meets it."""
    try:
        summand = sympy.sympify(expr, strict=True)
    except (sympy.SympifyError, TypeError, ValueError):
        summand = None
    if not isinstance(summand, sympy.Expr):
        raise SpecError(f"the reduction {_show(name)} must be of a SymPy expression (a number per element), got "
                        f"{type(expr).__name__} {_show(expr)}")
    return summand


def _symbol(what: str, name, **assumptions) -> sympy.Symbol:
    if not isinstance(name, str):
        raise SpecError(f"the name of a {what} must be a string, got {type(name).__name__} {_show(name)}")
    return sympy.Symbol(name, **assumptions)


def validate(spec: Spec) -> Variant:
    """Check a spec and freeze it into a ``Variant``.

    Guarantees: the name and every symbol name are valid, unique identifiers in Python's normal form (NFKC) that the
    generated code does not use for itself; defaults are finite numbers; every expression is a SymPy expression of
    supported nodes over declared symbols and earlier definitions, with real numbers within float64's range (SymPy's
    constants such as ``E`` and ``pi`` become float64 numbers), conditions only where conditions go, and within the
    bounds on size and depth (``MAX_NODES``, ``MAX_DEPTH``, ...); exactly the parameter, the states and the scalar states
    are updated, each once; scalar states depend on scalars only. Raises ``SpecError`` naming the problem otherwise.
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"expected an adamgen.spec.Spec, got {type(spec).__name__}")
    where = f"variant {_show(spec.name)}"
    _check_variant_name(where, spec.name)
    _check_text(where, spec.doc, spec.reference)
    declarations = len(spec._hyperparameters) + len(spec._states) + len(spec._scalar_states) + len(spec._definitions)
    if declarations > MAX_DECLARATIONS:
        raise SpecError(f"{where}: {declarations} hyperparameters, states and definitions; adamgen takes at most "
                        f"{MAX_DECLARATIONS} (MAX_DECLARATIONS)")
    if len(spec._states) > MAX_STATES:
        raise SpecError(f"{where}: {len(spec._states)} state tensors; adamgen takes at most {MAX_STATES} (MAX_STATES)")

    hyperparameters = tuple((h, _check_default(where, h, d)) for h, d in spec._hyperparameters)
    states = tuple((s, v if v is param else _check_number(where, s, v, "initial value")) for s, v in spec._states)
    scalar_states = tuple((s, _check_number(where, s, v, "initial value")) for s, v in spec._scalar_states)
    row_states = tuple((s, _check_number(where, s, v, "initial value")) for s, v in spec._row_states)
    col_states = tuple((s, _check_number(where, s, v, "initial value")) for s, v in spec._col_states)
    vectors = (*row_states, *col_states)

    inputs = tuple(spec._inputs)
    declared = [param, grad, step, numel, rows, cols, ndim, *(s for s, _ in hyperparameters), *(s for s, _ in states),
                *(s for s, _ in scalar_states), *(s for s, _ in vectors), *inputs]
    _check_updates(where, spec, hyperparameters, states, scalar_states + vectors)
    _check_names(where, [s.name for s in declared[7:]] + [s.name for s, _ in spec._definitions],
                 arrays=[s.name for s in declared[:2]] + [s.name for s, _ in states] + [s.name for s in inputs])

    known = set(declared)
    element = {param, grad, *(s for s, _ in states), *inputs}
    conditions = {h for h, default in hyperparameters if isinstance(default, bool)}  # flags are conditions
    sizes = _Sizes(where)
    definitions = []
    for symbol, expr in spec._definitions:
        expr = _sympify(where, symbol, expr)
        sizes.measure(symbol, expr)  # first: what follows recurses over the expression
        expr = _check_numbers(where, symbol, _without_ite(expr))
        unknown = expr.free_symbols - known
        if unknown:
            _refuse_unknown(where, symbol, unknown, declared + [s for s, _ in spec._definitions])
        _check_nodes(where, symbol, expr, conditions)
        if _is_condition(expr, conditions):
            if symbol.is_real:
                raise SpecError(f"{where}: {symbol} is a number but its expression {_show(expr)} is a condition; give a "
                                f"number, e.g. Piecewise((1, {_show(expr)}), (0, True))")
            conditions.add(symbol)
        if outer_symbols(expr) & element:
            element.add(symbol)
            sizes.per_element(symbol)
        known.add(symbol)
        definitions.append((symbol, expr))
    sizes.check_total([new for _, new in spec._updates])

    variant = Variant(spec.name, hyperparameters, states, scalar_states, tuple(definitions), tuple(spec._updates),
                      doc=spec.doc, reference=spec.reference, row_states=row_states, col_states=col_states,
                      inputs=inputs)
    levels = variant.levels
    _check_levels(where, variant, levels)
    allowed = {**{s: (HOST, "scalar state", "per-tensor values only (hyperparameters, step, scalar states, sums over "
                                            "the tensor)") for s, _ in scalar_states},
               **{s: (ROW, "row state", "values with one per row at most (row states, row sums and means, per-tensor "
                                        "values)") for s, _ in row_states},
               **{s: (COL, "column state", "values with one per column at most (column states, column sums and means, "
                                           "per-tensor values)") for s, _ in col_states}}
    for target, new in spec._updates:
        if new in conditions:
            raise SpecError(f"{where}: the new value of {target} is a condition ({_show(dict(definitions)[new])}); give "
                            "a number, e.g. Piecewise((1, condition), (0, True))")
        if target in allowed and not levels.get(new, HOST) <= allowed[target][0]:
            _, kind, what = allowed[target]
            raise SpecError(f"{where}: {kind} {target} must be updated from {what}, not from values with one per "
                            f"{LEVEL_NAMES[levels[new]]}")
    return variant


def _check_levels(where: str, variant: Variant, levels: dict) -> None:
    """Each mean over a slice's rows (columns) of a value with at most one per row (column)."""
    for symbol, expr in variant.definitions:
        for node in expr.atoms(RowsMean, ColsMean):
            bound, what = (ROW, "row") if isinstance(node, RowsMean) else (COL, "column")
            found = level(node.args[0], levels)
            if not found <= bound:
                raise SpecError(f"{where}: {symbol} takes the mean over a slice's {what}s of {_show(node.args[0])}, "
                                f"which has one value per {LEVEL_NAMES[found]}; it takes values with one per {what}")


def check_transformed(variant: Variant, option: str, source: str) -> Variant:
    """Check what the option transform ``option`` made of the checked variant named ``source``: names (free, not
    reserved, the kernels' locals of any new state included), supported nodes, finite numbers within float64's range
    (substituting 0 for a hyperparameter can divide by zero) and the bounds on size. Returns ``variant``; raises
    ``SpecError`` naming the option."""
    where = f"{option} on variant {source!r}"
    names = [s.name for s, _ in (*variant.hyperparameters, *variant.states, *variant.scalar_states, *variant.definitions)]
    _check_names(where, names, arrays=["param", "grad"] + [s.name for s, _ in variant.states]
                 + [s.name for s in variant.inputs])
    _check_variant_name(where, variant.name)
    element = set(variant.element_symbols)
    conditions = {h for h, default in variant.hyperparameters if isinstance(default, bool)}
    sizes = _Sizes(where)
    for symbol, expr in variant.definitions:
        sizes.measure(symbol, expr)
        _check_numbers(where, symbol, expr)
        _check_nodes(where, symbol, expr, conditions)
        if _is_condition(expr, conditions):
            conditions.add(symbol)
        if outer_symbols(expr) & element:
            element.add(symbol)
            sizes.per_element(symbol)
    sizes.check_total([new for _, new in variant.updates])
    return variant


def _show(value, limit: int = 80) -> str:
    """``value`` for an error message, shortened; never fails (str() of an integer with thousands of digits raises)."""
    try:
        text = repr(value) if isinstance(value, str) else str(value)
    except ValueError:
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _check_variant_name(where: str, name) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise SpecError(f"{where}: the name must be a Python identifier (it names the generated module)")
    normal = unicodedata.normalize("NFKC", name)
    if normal != name:
        raise SpecError(f"{where}: Python reads the name as {normal!r} (NFKC normalisation), so a module of that name "
                        f"cannot be imported; write {normal!r}")
    if len(name.encode()) > MAX_NAME_LENGTH:
        raise SpecError(f"{where}: the name is {len(name.encode())} bytes long in UTF-8; it names files, and adamgen "
                        f"takes at most {MAX_NAME_LENGTH} (MAX_NAME_LENGTH)")


def _check_text(where: str, doc, reference) -> None:
    """The doc and the reference are text: any text (the generated module writes them only as escaped literals and
    comments that cannot end), but text."""
    for what, text in (("doc", doc), ("reference", reference)):
        if not isinstance(text, str):
            raise SpecError(f"{where}: the {what} must be a string, got {type(text).__name__}")


def _check_names(where: str, names: list, arrays: list) -> None:
    """Every name a valid, unreserved identifier in Python's normal form, and no name twice."""
    for name in names:
        if len(name) > MAX_NAME_LENGTH:
            raise SpecError(f"{where}: the name {_show(name)} is {len(name)} characters long; adamgen takes at most "
                            f"{MAX_NAME_LENGTH} (MAX_NAME_LENGTH)")
        normal = unicodedata.normalize("NFKC", name)
        if normal != name:
            why = reserved(normal, arrays)
            raise SpecError(f"{where}: Python reads the name {name!r} as {normal!r} (NFKC normalisation)"
                            + (f", which is reserved for the generated code ({why}); choose another" if why
                               else f"; write {normal!r}"))
        if not name.isidentifier() or keyword.iskeyword(name):
            raise SpecError(f"{where}: {name!r} is not a Python identifier")
        why = reserved(name, arrays)
        if why:
            raise SpecError(f"{where}: the name {name!r} is reserved for the generated code ({why}); choose another")
    seen = set()
    for name in ["param", "grad", "step", "numel", "rows", "cols", "ndim", *names]:
        if name in seen:
            raise SpecError(f"{where}: the name {name!r} is declared twice")
        seen.add(name)


def _check_updates(where: str, spec: Spec, hyperparameters, states, scalar_states) -> None:
    """Exactly the parameter, every state and every scalar state are updated, each once."""
    targets = {param, *(s for s, _ in states), *(s for s, _ in scalar_states)}
    hyper = {h.name for h, _ in hyperparameters}
    for target, _ in spec._updates:
        if isinstance(target, sympy.Symbol) and target in targets:
            continue
        name = target.name if isinstance(target, sympy.Symbol) else target if isinstance(target, str) else None
        if target in spec._inputs:
            raise SpecError(f"{where}: cannot update input {target}: an input is read, never written; declare a "
                            "state for a value the rule keeps")
        if name in hyper:
            kind = "hyperparameter"
        elif name in {s.name for s in targets}:
            raise SpecError(f"{where}: cannot update {_show(target)}: give the symbol that declared it "
                            "(spec.state returns it; param is adamgen.spec.param), not "
                            + ("its name" if isinstance(target, str) else "another symbol of the same name"))
        else:
            kind = "symbol" if isinstance(target, sympy.Symbol) else type(target).__name__
        raise SpecError(f"{where}: cannot update {kind} {_show(target)}: only the parameter and declared states are "
                        "updated")
    updated = set()
    for target, _ in spec._updates:
        if target in updated:
            raise SpecError(f"{where}: {target} is updated twice")
        updated.add(target)
    missing = [t.name for t in (param, *(s for s, _ in states), *(s for s, _ in scalar_states)) if t not in updated]
    if missing:
        raise SpecError(f"{where}: no update given for {', '.join(missing)}")


def _check_number(where: str, symbol, value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SpecError(f"{where}: the {what} of {symbol} must be a finite number, got {_show(value)}")
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        number = math.inf
    if not math.isfinite(number):
        raise SpecError(f"{where}: the {what} of {symbol} must be a finite number within float64's range, got "
                        f"{_show(value)}")
    return number


def _check_default(where: str, symbol, value):
    if isinstance(value, bool):
        return value
    return _check_number(where, symbol, value, "default")


def _sympify(where: str, symbol, expr) -> sympy.Basic:
    if isinstance(expr, bool):
        raise SpecError(f"{where}: the expression for {symbol} is the constant {expr}; write a condition or a number")
    try:
        expr = sympy.sympify(expr, strict=True)
    except (sympy.SympifyError, TypeError, ValueError) as error:
        raise SpecError(f"{where}: the expression for {symbol} is not a SymPy expression: {_show(error, 200)}") from None
    if not isinstance(expr, (sympy.Expr, sympy.logic.boolalg.Boolean)):
        raise SpecError(f"{where}: the expression for {symbol} must be a SymPy expression or condition, got "
                        f"{type(expr).__name__}")
    return expr


class _Sizes:
    """The sizes of a spec's expressions as the kernels compute them: with every per-element definition written out
    where it is used (lowering inlines them), as (nodes, depth, atan2 calls, nested comparisons); and the checks of the
    bounds on them."""

    def __init__(self, where: str):
        self.where = where
        self.sizes = {}        # definition -> its size
        self.written_out = {}  # per-element definition -> its size

    def measure(self, symbol, expr) -> None:
        """Measure a definition before anything recursive touches it: a spec too deep for SymPy's recursive functions
        gets the SpecError that names the bound, not a RecursionError."""
        nodes, depth, calls, nesting = self.sizes[symbol] = _measure(expr, self.written_out)
        if depth > MAX_DEPTH:
            raise SpecError(f"{self.where}: the expression for {symbol} is nested {depth} deep (per-element definitions "
                            f"written out where they are used); adamgen takes at most {MAX_DEPTH} (MAX_DEPTH)")
        if nodes > MAX_NODES:
            raise SpecError(f"{self.where}: the expression for {symbol} has {nodes} nodes (per-element definitions "
                            f"written out where they are used); adamgen takes at most {MAX_NODES} (MAX_NODES)")
        if nesting > MAX_NESTED_COMPARISONS:
            raise SpecError(f"{self.where}: the expression for {symbol} nests comparisons {nesting} deep (a comparison "
                            "or a sign, which compares its argument with 0, inside the operand of another; per-element "
                            f"definitions written out where they are used); adamgen takes at most "
                            f"{MAX_NESTED_COMPARISONS} (MAX_NESTED_COMPARISONS): SymPy's cost grows exponentially with it")

    def per_element(self, symbol) -> None:
        self.written_out[symbol] = self.sizes[symbol]

    def check_total(self, news) -> None:
        """What the generated code computes, the new values and the scalar definitions, within the bounds together."""
        computed = set(news) | (set(self.sizes) - set(self.written_out))
        nodes = sum(self.sizes[s][0] for s in computed if s in self.sizes)
        calls = sum(self.sizes[s][2] for s in computed if s in self.sizes)
        if nodes > MAX_TOTAL_NODES:
            raise SpecError(f"{self.where}: the new values and scalar definitions have {nodes} nodes together "
                            "(per-element definitions written out where they are used); adamgen takes at most "
                            f"{MAX_TOTAL_NODES} (MAX_TOTAL_NODES)")
        if calls > MAX_ATAN2:
            raise SpecError(f"{self.where}: the new values and scalar definitions call atan2 or atan {calls} times "
                            "(per-element definitions written out where they are used); adamgen takes at most "
                            f"{MAX_ATAN2} (MAX_ATAN2): a float32 CPU kernel inlines a polynomial for each call")


def _measure(expr, written_out: dict) -> tuple[int, int, int, int]:
    """The node count, nesting depth, number of atan2 and atan calls and nesting of comparisons (and of sign, which
    compares its argument with 0) of ``expr``, with the per-element definitions in ``written_out`` (symbol -> size)
    written out where they are used. Iterative, over shared subtrees once."""
    measured = {}
    stack = [(expr, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            parts = [measured[id(arg)] for arg in node.args]
            calls = sum(p[2] for p in parts) + isinstance(node, (sympy.atan2, sympy.atan))
            nesting = max(p[3] for p in parts) + isinstance(node, (sympy.core.relational.Relational, sign))
            measured[key] = (1 + sum(p[0] for p in parts), 1 + max(p[1] for p in parts), calls, nesting)
        elif key in measured:
            continue
        elif isinstance(node, sympy.Symbol):
            measured[key] = written_out.get(node, (1, 1, 0, 0))
        elif not node.args:
            measured[key] = (1, 1, 0, 0)
        else:
            stack.append((node, True))
            stack.extend((arg, False) for arg in node.args if id(arg) not in measured)
    return measured[id(expr)]


def _without_ite(expr):
    """``expr`` with SymPy's ITE(a, b, c) (which it makes of a comparison with a Piecewise) as (a & b) | (~a & c)."""
    ite = sympy.logic.boolalg.ITE
    if not expr.has(ite):
        return expr
    return expr.replace(ite, lambda a, b, c: sympy.Or(sympy.And(a, b), sympy.And(sympy.Not(a), c)))


def _check_numbers(where: str, symbol, expr):
    """``expr`` with SymPy's constants (``E`` from ``exp(1)``, ``pi`` from ``atan2(1, 1)``, ...) as float64 numbers,
    after checking that every number is real, finite and within float64's range and every exponent within
    ``MAX_EXPONENT``."""
    constants = expr.atoms(sympy.NumberSymbol)
    if constants:
        expr = expr.xreplace({c: sympy.Float(float(c)) for c in constants})
    for node in sympy.preorder_traversal(expr):
        if node is sympy.zoo:
            raise SpecError(f"{where}: the expression for {symbol} contains the non-finite number zoo (a division by zero)")
        if isinstance(node, sympy.Number):
            if not node.is_finite:
                raise SpecError(f"{where}: the expression for {symbol} contains the non-finite number {node}")
            if not _in_float64_range(node):
                raise SpecError(f"{where}: the expression for {symbol} contains the number {sympy.Float(node, 3)}, which "
                                "is out of float64's range (magnitudes up to 1.8e308) or, as an exact fraction, has more "
                                "than 330 digits")
        elif node.is_Pow and node.exp.is_Rational and max(abs(node.exp.p), node.exp.q) > MAX_EXPONENT:
            raise SpecError(f"{where}: the expression for {symbol} raises to the power {_show(node.exp, 40)}; adamgen "
                            f"takes exponents up to {MAX_EXPONENT} (MAX_EXPONENT), numerator and denominator")
        elif node.is_Pow and node.is_number and node.is_extended_real is False:
            raise SpecError(f"{where}: the expression for {symbol} contains {_show(node)}, which is not a real number")
    return expr


def _in_float64_range(number) -> bool:
    """Whether ``number`` is at most float64's largest in magnitude (smaller ones round to a subnormal or 0, as the float
    arithmetic that computes them would) and, as a fraction, of fewer than ~330 digits (str() fails from 4300)."""
    if isinstance(number, sympy.Rational) and max(abs(number.p), number.q).bit_length() > 1100:
        return False
    return math.isfinite(float(number))


def _is_condition(expr, conditions) -> bool:
    """Whether ``expr`` is a condition: a comparison, a logical operation, true/false or a condition definition."""
    if isinstance(expr, sympy.Symbol):
        return expr in conditions
    return isinstance(expr, sympy.logic.boolalg.Boolean)


def _refuse_unknown(where: str, symbol, unknown, symbols) -> None:
    """Name the first symbol of ``unknown``: a later definition, a look-alike of a declared symbol, or undeclared."""
    by_name = {s.name: s for s in symbols}
    for s in sorted(unknown, key=str):
        if s == symbol:
            raise SpecError(f"{where}: {symbol} reads itself; a definition reads declarations and earlier definitions")
        if s == by_name.get(s.name):
            raise SpecError(f"{where}: {symbol} reads {s.name}, which is defined after it; a definition reads "
                            "declarations and earlier definitions")
        if s.name in by_name:
            raise SpecError(f"{where}: {symbol} uses a SymPy symbol {s.name} that is not the declared {s.name} (their "
                            "assumptions differ); use the symbol the spec returned when declaring it")
    raise SpecError(f"{where}: {symbol} uses undeclared symbol(s) {', '.join(sorted(str(s) for s in unknown))}")


def _check_nodes(where: str, symbol, expr, conditions) -> None:
    """Supported nodes only, every Piecewise with a default branch, and conditions (comparisons, logic, condition
    definitions, flags: hyperparameters whose default is a bool) exactly where conditions go: as the conditions of a
    Piecewise and the operands of And, Or and Not."""
    for node in sympy.preorder_traversal(expr):
        if not isinstance(node, SUPPORTED_NODES):
            raise SpecError(f"{where}: the expression for {symbol} uses {type(node).__name__} ({_show(node)}), which "
                            "adamgen cannot compile; supported: + - * / **, sqrt, Abs, Max, Min, sign, exp, log, atan2, "
                            "atan, Piecewise and comparisons")
        if isinstance(node, Piecewise) and node.args[-1].cond != sympy.true:
            raise SpecError(f"{where}: a Piecewise in the expression for {symbol} has no default branch; end it with "
                            "(value, True) so that every element gets a value")
        if isinstance(node, Piecewise):
            continue
        if isinstance(node, (sympy.And, sympy.Or, sympy.Not)):
            numbers, conditions_ = (), node.args
        elif isinstance(node, sympy.functions.elementary.piecewise.ExprCondPair):
            numbers, conditions_ = (node.expr,), (node.cond,)
        else:
            numbers, conditions_ = node.args, ()
        for arg in numbers:
            if _is_condition(arg, conditions):
                what = "flag" if arg.is_Symbol and arg.is_real else "condition"
                raise SpecError(f"{where}: the expression for {symbol} uses the {what} {_show(arg)} as a number; "
                                f"write Piecewise((1, {_show(arg)}), (0, True))")
        for arg in conditions_:
            if not _is_condition(arg, conditions):
                raise SpecError(f"{where}: the expression for {symbol} uses {_show(arg)} as a condition; compare it, "
                                f"e.g. {_show(arg)} > 0")
