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
import hashlib
import keyword
import math
import re
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


class ReduceSum(sympy.Function):
    """The sum over all elements of one tensor of a per-element expression: a per-tensor scalar.

    Written with ``Spec.sum``, ``Spec.mean`` and ``Spec.norm``. Lowering splits a variant that uses one into phases: a
    pass that reduces, then the elementwise update."""

    nargs = 1


def outer_symbols(expr) -> set:
    """The free symbols of ``expr`` outside any reduction (what decides whether it has one value per element)."""
    return expr.replace(lambda e: isinstance(e, ReduceSum), lambda e: sympy.S.Zero).free_symbols \
        if expr.has(ReduceSum) else expr.free_symbols

# Names the generated code uses for itself; a spec may not take them.
RESERVED = frozenset({
    "param", "grad", "step", "numel", "state", "partials", "block", "start", "stop", "scalars", "math", "np", "numba",
    "cuda", "i", "n", "dtype", "kernel", "reduce", "parallel", "arrays", "init", "maximize", "grad_sign", "stream",
    "threads", "blocks", "host", "device", "torch", "True", "False", "None",
})
_GENERATED_NAME = re.compile(r"^[ctr]\d+$")  # c0, ... hoisted scalars; t0, ... element temporaries; r0, ... reductions

# Expression node types the printers of every target support.
SUPPORTED_NODES = (
    sympy.Symbol, sympy.Integer, sympy.Rational, sympy.Float, sympy.Add, sympy.Mul, sympy.Pow, Abs, Max, Min, sign,
    exp, log, atan2, Piecewise, ReduceSum, sympy.core.relational.Relational, sympy.logic.boolalg.BooleanTrue,
    sympy.logic.boolalg.BooleanFalse, sympy.And, sympy.Or, sympy.Not, sympy.functions.elementary.piecewise.ExprCondPair,
    sympy.Tuple,
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

    @property
    def element_symbols(self) -> frozenset:
        """Symbols with one value per element: the parameter, the gradient and the state tensors."""
        return frozenset([param, grad, *(s for s, _ in self.states)])

    @property
    def host_symbols(self) -> frozenset:
        """Symbols with one value per tensor and step: hyperparameters, the step, numel and the scalar states."""
        return frozenset([step, numel, *(h for h, _ in self.hyperparameters), *(s for s, _ in self.scalar_states)])

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
        self._definitions: list[tuple[sympy.Symbol, object]] = []
        self._updates: list[tuple[object, sympy.Symbol]] = []

    def hyperparameter(self, name: str, default) -> sympy.Symbol:
        """Declare a hyperparameter with its default; ``step(...)`` takes it as a keyword argument."""
        symbol = sympy.Symbol(name, real=True)
        self._hyperparameters.append((symbol, default))
        return symbol

    def hyperparameters(self, **defaults) -> tuple[sympy.Symbol, ...]:
        """Declare several hyperparameters at once, in keyword order."""
        return tuple(self.hyperparameter(name, default) for name, default in defaults.items())

    def state(self, name: str, init: float = 0.0) -> sympy.Symbol:
        """Declare a state tensor, one value per element, filled with ``init`` when the optimizer starts."""
        symbol = sympy.Symbol(name, real=True)
        self._states.append((symbol, init))
        return symbol

    def states(self, *names: str) -> tuple[sympy.Symbol, ...]:
        """Declare several zero-initialised state tensors."""
        return tuple(self.state(name) for name in names)

    def scalar_state(self, name: str, init: float) -> sympy.Symbol:
        """Declare a per-tensor scalar state, kept on the host in float64 (NAdam's running product)."""
        symbol = sympy.Symbol(name, real=True)
        self._scalar_states.append((symbol, init))
        return symbol

    def define(self, name: str, expr) -> sympy.Symbol:
        """Name an intermediate value (a number, or a condition such as ``rho_t > 5``).

        A scalar one keeps its name in the generated host code."""
        is_condition = isinstance(expr, sympy.logic.boolalg.Boolean) and not isinstance(expr, sympy.Symbol)
        symbol = sympy.Symbol(name) if is_condition else sympy.Symbol(name, real=True)
        self._definitions.append((symbol, expr))
        return symbol

    def sum(self, name: str, expr) -> sympy.Symbol:
        """Name the sum of a per-element expression over the whole tensor."""
        return self.define(name, ReduceSum(expr))

    def mean(self, name: str, expr) -> sympy.Symbol:
        """Name the mean of a per-element expression over the tensor (0 for an empty tensor)."""
        return self.define(name, ReduceSum(expr) / numel)

    def norm(self, name: str, expr) -> sympy.Symbol:
        """Name the Euclidean norm over the tensor of a per-element expression."""
        return self.define(name, sympy.sqrt(ReduceSum(expr**2)))

    def update(self, target, expr) -> sympy.Symbol:
        """Give the new value of ``target`` (the parameter, a state or a scalar state).

        Returns the symbol ``<target>_new`` for the new value, for rules that read it (Adam's update reads the new moments).
        """
        new = self.define(f"{target}_new", expr)
        self._updates.append((target, new))
        return new


def validate(spec: Spec) -> Variant:
    """Check a spec and freeze it into a ``Variant``.

    Guarantees: the name and every symbol name are valid, unique, non-reserved identifiers; defaults are finite numbers;
    every expression is a SymPy expression of supported nodes over declared symbols and earlier definitions; exactly the
    parameter, the states and the scalar states are updated, each once; scalar states depend on scalars only.
    Raises ``SpecError`` naming the problem otherwise.
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"expected an adamgen.spec.Spec, got {type(spec).__name__}")
    where = f"variant {spec.name!r}"
    if not isinstance(spec.name, str) or not spec.name.isidentifier() or keyword.iskeyword(spec.name):
        raise SpecError(f"{where}: the name must be a Python identifier (it names the generated module)")

    targets = [str(target) for target, _ in spec._updates]
    for target in set(targets):
        if targets.count(target) > 1:
            raise SpecError(f"{where}: {target} is updated twice")
    hyperparameters = tuple((h, _check_default(where, h, d)) for h, d in spec._hyperparameters)
    states = tuple((s, _check_number(where, s, v, "initial value")) for s, v in spec._states)
    scalar_states = tuple((s, _check_number(where, s, v, "initial value")) for s, v in spec._scalar_states)

    declared = [param, grad, step, numel, *(s for s, _ in hyperparameters), *(s for s, _ in states),
                *(s for s, _ in scalar_states)]
    for symbol in declared[4:]:
        _check_name(where, symbol.name)
    _check_unique(where, [s.name for s in declared] + [s.name for s, _ in spec._definitions])

    known = set(declared)
    element = {param, grad, *(s for s, _ in states)}
    definitions = []
    for symbol, expr in spec._definitions:
        _check_name(where, symbol.name)
        expr = _sympify(where, symbol, expr)
        unknown = sorted(str(s) for s in expr.free_symbols - known)
        if unknown:
            raise SpecError(f"{where}: {symbol} uses undeclared symbol(s) {', '.join(unknown)}")
        _check_nodes(where, symbol, expr)
        if outer_symbols(expr) & element:
            element.add(symbol)
        known.add(symbol)
        definitions.append((symbol, expr))

    targets = {param: "the parameter", **{s: "state" for s, _ in states}, **{s: "scalar state" for s, _ in scalar_states}}
    updates = []
    for target, new in spec._updates:
        if not isinstance(target, sympy.Symbol) or target not in targets:
            kind = "hyperparameter" if target in dict(hyperparameters) else "symbol"
            raise SpecError(f"{where}: cannot update {kind} {target}: only the parameter and declared states are updated")
        if not isinstance(dict(definitions)[new], sympy.Expr):
            raise SpecError(f"{where}: the new value of {target} is a condition ({dict(definitions)[new]}); give a number, "
                            "e.g. Piecewise((1, condition), (0, True))")
        if targets[target] == "scalar state" and new in element:
            raise SpecError(f"{where}: scalar state {target} must be updated from scalars only (hyperparameters, step, "
                            "scalar states), not from per-element values")
        updates.append((target, new))
    missing = [str(t) for t in targets if t not in dict(updates)]
    if missing:
        raise SpecError(f"{where}: no update given for {', '.join(missing)}")

    return Variant(spec.name, hyperparameters, states, scalar_states, tuple(definitions), tuple(updates),
                   doc=spec.doc, reference=spec.reference)


def _check_name(where: str, name: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SpecError(f"{where}: {name!r} is not a Python identifier")
    if name in RESERVED or name.startswith("_") or _GENERATED_NAME.match(name):
        raise SpecError(f"{where}: the name {name!r} is reserved for the generated code; choose another")


def _check_unique(where: str, names: Iterable[str]) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise SpecError(f"{where}: the name {name!r} is declared twice")
        seen.add(name)


def _check_number(where: str, symbol, value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{where}: the {what} of {symbol} must be a finite number, got {value!r}")
    return float(value)


def _check_default(where: str, symbol, value):
    if isinstance(value, bool):
        return value
    return _check_number(where, symbol, value, "default")


def _sympify(where: str, symbol, expr) -> sympy.Basic:
    if isinstance(expr, bool):
        raise SpecError(f"{where}: the expression for {symbol} is the constant {expr}; write a condition or a number")
    try:
        expr = sympy.sympify(expr, strict=True)
    except (sympy.SympifyError, TypeError) as error:
        raise SpecError(f"{where}: the expression for {symbol} is not a SymPy expression: {error}") from None
    if not isinstance(expr, (sympy.Expr, sympy.logic.boolalg.Boolean)):
        raise SpecError(f"{where}: the expression for {symbol} must be a SymPy expression or condition, got {expr}")
    return expr


def _check_nodes(where: str, symbol, expr: sympy.Expr) -> None:
    for node in sympy.preorder_traversal(expr):
        if not isinstance(node, SUPPORTED_NODES):
            raise SpecError(f"{where}: the expression for {symbol} uses {type(node).__name__} ({node}), which adamgen "
                            "cannot compile; supported: + - * / **, sqrt, Abs, Max, Min, sign, exp, log, atan2, Piecewise")
        if isinstance(node, Piecewise) and node.args[-1].cond != sympy.true:
            raise SpecError(f"{where}: a Piecewise in the expression for {symbol} has no default branch; end it with "
                            "(value, True) so that every element gets a value")
        if isinstance(node, sympy.Number) and not node.is_finite:
            raise SpecError(f"{where}: the expression for {symbol} contains the non-finite number {node}")
