"""Malformed, adversarial and valid specs for property-based tests, and how to judge what adamgen makes of them.

A ``Case`` is a spec plan (names, defaults and expression recipes, plain data that prints readably) with options and what
adamgen must do with it:

- ``"error"``: a ``SpecError`` or ``GenerateError`` whose message contains one of ``match``;
- ``"valid"``: a module whose kernels agree with the float64 oracle (``adamgen.oracle.Oracle``);
- ``"either"``: one or the other, never anything else.

``cases(kind)`` draws cases of one kind (``"malformed"``, ``"valid"``, ``"host"``); ``outcome`` runs validation,
options, lowering, printing and rendering (for every target), and compiles the source; ``check_module`` compiles a
module and steps it next to the oracle. Shared by test_fuzz_specs.py and the fuzz runner fuzz_specs.py.

Kernels and oracle are compared one step at a time from the same state, within a first-order bound on the kernel's
round-off that is computed per element from the spec itself (``roundoff``): each operation rounds by at most one unit
in the last place of its result, and errors propagate through derivatives. Elements whose result the rounding could
flip across a jump (a Piecewise condition, sign, atan2's branch cut) or push out of the dtype's range are left out, and
only those.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import math
import unicodedata
from fractions import Fraction

import numpy as np
import sympy
from hypothesis import strategies as st

import adamgen
from adamgen import spec as spec_module
from adamgen.errors import GenerateError, SpecError
from adamgen.generate import TARGETS, generate
from adamgen.oracle import Oracle
from adamgen.spec import ReduceSum, Spec, grad, numel, param, step
from adamgen.variants import as_variant, with_options

# --------------------------------------------------------------------------------------------------------------------
# Spec plans: plain data, built into a Spec on demand.

# Expression recipes are nested tuples: ("sym", name), ("num", value), ("raw", object) and (op, *operands) for the ops of
# OPS; ("foreign", name, assumptions) is a SymPy symbol that the spec did not declare.
UNARY = {
    "neg": lambda a: -a,
    "abs": sympy.Abs,
    "sign": sympy.sign,
    "sq": lambda a: a**2,
    "cube": lambda a: a**3,
    "pow11": lambda a: (a / (1 + sympy.Abs(a)))**11,  # above 8: a typed exponent in the kernel
    "recip": lambda a: 1 / (1 + a**2),
    "sqrt": lambda a: sympy.sqrt(sympy.Abs(a)),
    "hypot1": lambda a: sympy.sqrt(a**2 + 1),
    "exp": lambda a: sympy.exp(-sympy.Abs(a)),
    "expmin": lambda a: sympy.exp(sympy.Min(a, 4)),
    "log": lambda a: sympy.log(1 + a**2),
    "logabs": lambda a: sympy.log(sympy.Abs(a) + sympy.Rational(1, 2)),
    "atan": sympy.atan,
    "atan1": lambda a: sympy.atan2(a, 1),  # SymPy writes it atan(a)
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1 + b**2),
    "max": sympy.Max,
    "min": sympy.Min,
    "atan2": lambda a, b: sympy.atan2(a, b) if not (a == 0 and b == 0) else sympy.atan2(a, 1),  # atan2(0, 0) is nan
    "powabs": lambda a, b: (1 + sympy.Abs(a))**(b / (1 + sympy.Abs(b))),  # a symbolic exponent
}
COMPARE = {"gt": lambda a, b: a > b, "lt": lambda a, b: a < b, "ge": lambda a, b: a >= b, "le": lambda a, b: a <= b}
LOGIC = {"and": sympy.And, "or": sympy.Or}
CONSTANTS = {"E": sympy.E, "exp1": sympy.exp(1), "pi": sympy.pi, "atan2_11": sympy.atan2(1, 1),
             "EulerGamma": sympy.EulerGamma, "GoldenRatio": sympy.GoldenRatio, "Catalan": sympy.Catalan,
             "sqrt2": sympy.sqrt(2), "log2": sympy.log(2)}


def realize(recipe, names: dict):
    """The SymPy object of a recipe, with ``names`` mapping names to the spec's symbols."""
    op, *args = recipe
    if op == "sym":
        return names[args[0]]
    if op == "num":
        value = args[0]
        return sympy.Rational(value.numerator, value.denominator) if isinstance(value, Fraction) else value
    if op == "const":
        return CONSTANTS[args[0]]
    if op == "raw":
        return args[0]
    if op == "foreign":
        return sympy.Symbol(args[0], **args[1])
    if op == "fn":
        return getattr(sympy, args[0])(*(realize(a, names) for a in args[1:]))
    if op == "pw":
        pairs = [(realize(value, names), realize(cond, names)) for value, cond in args[0]]
        return sympy.Piecewise(*pairs)
    if op == "not":
        return sympy.Not(realize(args[0], names))
    if op == "true":
        return sympy.true
    operands = [realize(a, names) for a in args]
    for table in (UNARY, BINARY, COMPARE, LOGIC):
        if op in table:
            return table[op](*operands)
    if op == "pow":
        return operands[0]**operands[1]
    raise ValueError(f"unknown recipe op {op}")


@dataclasses.dataclass(frozen=True)
class Plan:
    """A spec as data. ``definitions`` are (name, kind, recipe) with kind "define", "sum", "mean" or "norm";
    ``updates`` are (target, recipe), the target a name or a recipe (a malformed target)."""

    name: object = "fuzzed"
    doc: object = ""
    reference: object = ""
    hyperparameters: tuple = ()
    states: tuple = ()
    scalar_states: tuple = ()
    definitions: tuple = ()
    updates: tuple = ()

    def build(self) -> Spec:
        spec = Spec(self.name, doc=self.doc, reference=self.reference)
        names = {"param": param, "grad": grad, "step": step, "numel": numel}
        for name, default in self.hyperparameters:
            names[name] = spec.hyperparameter(name, default)
        for name, init in self.states:
            names[name] = spec.state(name, init)
        for name, init in self.scalar_states:
            names[name] = spec.scalar_state(name, init)
        for name, kind, recipe in self.definitions:
            names[name] = getattr(spec, kind)(name, realize(recipe, names))
        for target, recipe in self.updates:
            target = names[target] if isinstance(target, str) and target in names else (
                realize(target, names) if isinstance(target, tuple) else target)
            names[f"{target}_new"] = spec.update(target, realize(recipe, names))
        return spec

    @property
    def arrays(self) -> list:
        return ["param", "grad"] + [name for name, _ in self.states]


@dataclasses.dataclass(frozen=True)
class Case:
    category: str
    plan: Plan
    expect: str  # "error", "valid" or "either"
    match: tuple = ()
    options: dict = dataclasses.field(default_factory=dict)
    hyperparameters: dict = dataclasses.field(default_factory=dict)  # step() arguments
    why: str = ""  # for host cases: the host-code semantics the case depends on

    def _repr_pretty_(self, printer, cycle):  # Hypothesis prints examples with this
        printer.text(repr(self))

    def __repr__(self):
        return (f"Case({self.category!r}, expect={self.expect!r}, match={self.match!r}, options={self.options!r}, "
                f"hyperparameters={self.hyperparameters!r},\n  plan={self.plan!r})")


# --------------------------------------------------------------------------------------------------------------------
# Valid rules.

SAFE_NAMES = ("lr", "beta1", "beta2", "eps", "weight_decay", "alpha", "gamma", "rho", "nu", "kappa", "T", "K", "α",
              "β", "lr_scale", "momentum", "damping", "theta", "tau", "mu", "іn", "ρ")  # іn: a Cyrillic і
STATE_NAMES = ("exp_avg", "exp_avg_sq", "m", "v", "z", "prev_grad", "s", "accumulator", "μ", "velocity")
SCALAR_NAMES = ("product", "total", "running", "tally", "lr_max", "weight_sum")
DEFINITION_NAMES = ("u", "w", "q", "direction", "ratio", "scale", "bias_correction1", "bias_correction2", "rms",
                    "trust", "h", "g2", "denom", "step_size", "clip")


def numbers_strategy():
    return st.one_of(
        st.fractions(min_value=-3, max_value=3, max_denominator=8).map(lambda f: ("num", f)),
        st.sampled_from([0.5, 0.9, 0.999, 1e-3, 1e-8, 2.5, -1.0]).map(lambda v: ("num", v)),
        st.sampled_from(sorted(CONSTANTS)).map(lambda c: ("const", c)),
    )


def expressions(element_leaves, scalar_leaves, max_leaves=8, flags=()):
    """Recipes over the given leaf names (element leaves may be empty: a scalar-only expression); ``flags`` (names of
    hyperparameters whose default is a bool) serve as conditions."""
    leaves = [("sym", n) for n in (*element_leaves, *scalar_leaves)]
    leaf = st.one_of(st.sampled_from(leaves), numbers_strategy()) if leaves else numbers_strategy()

    def extend(children):
        comparison = st.tuples(st.sampled_from(sorted(COMPARE)), children, children)
        condition = st.one_of(comparison, st.tuples(st.sampled_from(sorted(LOGIC)), comparison, comparison),
                              *([st.sampled_from([("sym", f) for f in flags] + [("not", ("sym", f)) for f in flags])]
                                if flags else []))
        return st.one_of(
            st.tuples(st.sampled_from(sorted(UNARY)), children),
            st.tuples(st.sampled_from(sorted(BINARY)), children, children),
            st.tuples(st.just("pw"), st.tuples(st.tuples(children, condition), st.tuples(children, st.just(("true",))))),
        )
    return st.recursive(leaf, extend, max_leaves=max_leaves)


def _mentions(recipe, names) -> bool:
    if recipe[0] == "sym":
        return recipe[1] in names
    return any(isinstance(a, tuple) and _mentions(a, names) for a in recipe[1:]) or (
        recipe[0] == "pw" and any(_mentions(v, names) or _mentions(c, names) for v, c in recipe[1]))


@st.composite
def valid_plans(draw, reductions=None, max_leaves=8):
    """A valid spec: hyperparameters (some flags), states, scalar states, definitions (some reductions) and updates."""
    hyper_names = draw(st.lists(st.sampled_from(SAFE_NAMES), min_size=1, max_size=4, unique=True))
    hyperparameters = []
    for k, name in enumerate(hyper_names):  # the first a number, the others numbers or flags
        numbers = st.sampled_from([0.1, 0.9, 0.5, 1e-3, 0.25, 2.0])
        hyperparameters.append((name, draw(numbers if k == 0 else st.one_of(numbers, st.booleans()))))
    flags = [name for name, default in hyperparameters if isinstance(default, bool)]
    states = [(n, draw(st.sampled_from([0.0, 0.0, 1.0, 1e-6, -0.5])))
              for n in draw(st.lists(st.sampled_from(STATE_NAMES), max_size=3, unique=True))]
    scalar_states = [(n, draw(st.sampled_from([1.0, 0.0, 0.5])))
                     for n in draw(st.lists(st.sampled_from(SCALAR_NAMES), max_size=2, unique=True))]
    element = ["param", "grad", *(n for n, _ in states)]
    scalar = [*(n for n in hyper_names if n not in flags), "step", *(n for n, _ in scalar_states)]
    definitions = []
    for name in draw(st.lists(st.sampled_from(DEFINITION_NAMES), max_size=4, unique=True)):
        kind = draw(st.sampled_from(["define", "define", "define", "sum", "mean", "norm"]
                                    if reductions is not False else ["define"]))
        if kind == "define":
            recipe = draw(expressions(draw(st.sampled_from([element, []])), scalar, max_leaves, flags))
        else:
            recipe = draw(expressions(element, scalar, max_leaves, flags))
        definitions.append((name, kind, recipe))
        element_value = kind == "define" and _mentions(recipe, element)
        (element if element_value else scalar).append(name)
    if reductions and not any(kind != "define" for _, kind, _ in definitions):
        definitions.append(("reduced", "norm", draw(expressions(element[:2], scalar, max_leaves, flags))))
        scalar.append("reduced")
    scalar_only = [n for n in scalar]
    updates = [("param", draw(expressions(element, scalar, max_leaves, flags)))]
    updates += [(n, draw(expressions(element, scalar, max_leaves, flags))) for n, _ in states]
    updates += [(n, draw(expressions([], scalar_only, max_leaves, flags))) for n, _ in scalar_states]
    order = draw(st.permutations(range(len(updates))))
    return Plan(name=draw(st.sampled_from(["fuzzed", "my_rule", "ruleα", "x"])), hyperparameters=tuple(hyperparameters),
                states=tuple(states), scalar_states=tuple(scalar_states), definitions=tuple(definitions),
                updates=tuple(updates[k] for k in order))


def _with(plan: Plan, **changes) -> Plan:
    return dataclasses.replace(plan, **changes)


# --------------------------------------------------------------------------------------------------------------------
# Malformed and adversarial specs, by category.

def _reserved_names(plan):
    """Names a spec may not take, from every family of the reserved table, with the arrays of ``plan``."""
    states = [n for n, _ in plan.states] or ["param"]
    return st.one_of(
        st.sampled_from(["max", "min", "abs", "bool", "range", "float", "int", "len", "sum", "print", "type", "object",
                         "Exception", "TypeError", "isinstance", "open", "id", "round", "pow", "list", "tuple", "dict"]),
        st.sampled_from(["math", "np", "numba", "cuda", "sys", "init", "init_many", "step_many"]),
        st.sampled_from(["PARALLEL_THRESHOLD", "VARIANT", "STATES", "HYPERPARAMETERS", "SPEC_HASH", "GROUPED",
                         "THREADS_PER_BLOCK", "MAX_BLOCKS", "ELEMENTWISE", "REDUCE_PHASES", "TARGET", "REFERENCE",
                         "SCALAR_STATES"]),
        st.sampled_from(["state", "scalars", "arrays", "dtype", "parallel", "partials", "stream",
                         "n", "i", "start", "stop", "maximize", "grad_sign"]),
        st.tuples(st.sampled_from("ctr"), st.integers(0, 200)).map(lambda t: f"{t[0]}{t[1]}"),
        st.text("abcxyz_0123", min_size=0, max_size=6).map(lambda t: "_" + t),
        st.tuples(st.sampled_from(["param", "grad", *states]), st.sampled_from(["_i", "_block"])).map("".join),
    )


# Characters whose NFKC form differs: fullwidth letters, ligatures, compatibility forms, superscripts, a micro sign.
_COMPAT = {"i": "ｉ", "m": "ｍ", "a": "ａ", "x": "ｘ", "n": "ｎ", "s": "ſ", "l": "ℓ", "2": "²", "1": "₁", "f": "ﬀ"}


def _lookalike(name: str, draw) -> str:
    positions = [k for k, ch in enumerate(name) if ch in _COMPAT]
    if not positions:
        return name + "²"
    k = draw(st.sampled_from(positions))
    return name[:k] + _COMPAT[name[k]] + name[k + 1:]


def _place_name(plan: Plan, name, where: str) -> Plan:
    """``plan`` with ``name`` declared as a hyperparameter, state, scalar state or definition (used by the update)."""
    if where == "hyperparameter":
        return _with(plan, hyperparameters=plan.hyperparameters + ((name, 0.5),),
                     updates=_scale_param_update(plan, ("sym", name)))
    if where == "state":
        return _with(plan, states=plan.states + ((name, 0.0),), updates=plan.updates + ((name, ("mul", ("sym", "grad"),
                                                                                                  ("num", 0.5))),))
    if where == "scalar state":
        return _with(plan, scalar_states=plan.scalar_states + ((name, 1.0),),
                     updates=plan.updates + ((name, ("mul", ("sym", "step"), ("num", 0.5))),))
    return _with(plan, definitions=plan.definitions + ((name, "define", ("sq", ("sym", "grad"))),),
                 updates=_scale_param_update(plan, ("sym", name)))


def _scale_param_update(plan: Plan, factor) -> tuple:
    return tuple((t, ("add", r, ("mul", factor, ("sym", "grad")))) if t == "param" else (t, r) for t, r in plan.updates)


KINDS = ("hyperparameter", "state", "scalar state", "definition")


def small_plans():
    return valid_plans(reductions=False, max_leaves=3)


@st.composite
def bad_names(draw):
    plan = draw(small_plans())
    where = draw(st.sampled_from(KINDS + ("variant",)))
    name = draw(st.one_of(
        st.text(min_size=0, max_size=12).filter(lambda t: not t.isidentifier() or keyword.iskeyword(t)),
        st.sampled_from(["class", "lambda", "None", "True", "def", "3x", "my-name", "a b", "", "x.y", "λ-1"]),
        st.integers(-5, 5), st.none(), st.just(b"lr"),
    ))
    if where == "variant":
        return Case("bad name", _with(plan, name=name), "error", ("Python identifier", "NFKC"))
    if not isinstance(name, str):
        return Case("bad name", _place_name(plan, name, where), "error", ("must be a string",))
    return Case("bad name", _place_name(plan, name, where), "error",
                ("is not a Python identifier", "NFKC", "reserved for the generated code"))


@st.composite
def long_names(draw):
    plan = draw(small_plans())
    length = draw(st.integers(spec_module.MAX_NAME_LENGTH + 1, 3 * spec_module.MAX_NAME_LENGTH))
    where = draw(st.sampled_from(KINDS + ("variant",)))
    name = ("v" * length) if where != "variant" else "λ" * (length // 2 + 1)
    if where == "variant":
        return Case("long name", _with(plan, name=name), "error", ("MAX_NAME_LENGTH",))
    return Case("long name", _place_name(plan, name, where), "error", ("MAX_NAME_LENGTH",))


@st.composite
def reserved_names(draw):
    plan = draw(small_plans())
    where = draw(st.sampled_from(KINDS))
    name = draw(_reserved_names(plan))
    if name in {n for n, _ in plan.hyperparameters + plan.states + plan.scalar_states} | {"param", "grad", "step"}:
        return Case("reserved name", _place_name(plan, name, where), "error", ("declared twice", "reserved"))
    return Case("reserved name", _place_name(plan, name, where), "error", (f"{name!r} is reserved",))


@st.composite
def unicode_lookalikes(draw):
    """Names that Python reads as another name (NFKC): refused, naming the normal form. Names that only look alike
    (Cyrillic or Greek letters) are other names to Python: valid."""
    plan = draw(small_plans())
    where = draw(st.sampled_from(KINDS))
    if draw(st.booleans()):
        base = draw(st.one_of(st.sampled_from(["i", "max", "min", "abs", "n", "lr", "grad_i", "alpha2", "mass",
                                                "s1", "range"]), _reserved_names(plan).filter(lambda n: n.isascii())))
        name = _lookalike(base, draw)
        normal = unicodedata.normalize("NFKC", name)
        if normal == name:
            return Case("unicode name", _place_name(plan, name, where), "either")
        return Case("unicode look-alike", _place_name(plan, name, where), "error", ("NFKC",))
    name = draw(st.sampled_from(["іn", "mах", "lг", "αlpha", "ρ", "ѕtep", "grаd"]))  # Cyrillic and Greek letters
    if name in {n for n, _ in plan.hyperparameters + plan.states + plan.scalar_states + tuple(
            (d[0], 0) for d in plan.definitions)}:
        return Case("unicode name", _place_name(plan, name, where), "error", ("declared twice",))
    return Case("unicode name", _place_name(plan, name, where), "valid")


@st.composite
def undeclared_symbols(draw):
    plan = draw(small_plans())
    kind = draw(st.sampled_from(["foreign", "lookalike symbol", "later", "itself"]))
    if kind == "foreign":
        name = draw(st.sampled_from(["momentum", "beta3", "x", "lr2", "Q"]))
        name = name if name not in {n for n, _ in plan.hyperparameters} else name + "_other"
        return Case("undeclared symbol", _with(plan, updates=_scale_param_update(plan, ("foreign", name, {"real": True}))),
                    "error", ("undeclared symbol(s)",))
    if kind == "lookalike symbol":
        target = draw(st.sampled_from([n for n, _ in plan.hyperparameters]))
        assumptions = draw(st.sampled_from([{}, {"positive": True}, {"integer": True}]))
        return Case("undeclared symbol", _with(plan, updates=_scale_param_update(plan, ("foreign", target, assumptions))),
                    "error", ("not the declared",))
    if kind == "later":
        plan = _with(plan, definitions=(("early", "define", ("add", ("sym", "grad"), ("foreign", "late",
                                                                                       {"real": True}))),
                                        ("late", "define", ("sq", ("sym", "grad")))) + plan.definitions,
                     updates=_scale_param_update(plan, ("sym", "early")))
        return Case("undeclared symbol", plan, "error", ("defined after",))
    plan = _with(plan, definitions=plan.definitions + (("selfish", "define", ("add", ("sym", "grad"),
                                                                                ("foreign", "selfish", {"real": True}))),),
                 updates=_scale_param_update(plan, ("sym", "selfish")))
    return Case("undeclared symbol", plan, "error", ("reads itself",))


UNSUPPORTED = ("sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos", "floor", "ceiling", "gamma", "erf",
               "loggamma", "frac", "Heaviside", "asinh", "sec", "LambertW")


@st.composite
def unsupported(draw):
    plan = draw(small_plans())
    kind = draw(st.sampled_from(["function", "undefined function", "object"]))
    if kind == "function":
        fn = draw(st.sampled_from(UNSUPPORTED))
        node = ("fn", fn, ("add", ("sym", "grad"), ("num", Fraction(1, 3))))
        return Case("unsupported function", _with(plan, updates=_scale_param_update(plan, node)), "error",
                    ("cannot compile",))
    if kind == "undefined function":
        node = ("raw", sympy.Function(draw(st.sampled_from(["f", "g", "clip_fn"])))(grad))
        return Case("unsupported function", _with(plan, updates=_scale_param_update(plan, node)), "error",
                    ("cannot compile",))
    obj = draw(st.sampled_from(["grad*2", [1, 2], {"a": 1}, None, 1j, sympy.Matrix([1, 2]), sympy.Tuple(1, 2),
                                np.array([1.0, 2.0]), object(), sympy.I * grad, sympy.Integral(grad, param),
                                sympy.Derivative(sympy.Function("f")(grad), grad), sympy.Mod(grad, 2),
                                sympy.Sum(grad, (param, 1, 3))]))
    where = draw(st.sampled_from(["update", "definition", "reduction"]))
    if where == "reduction":
        plan = _with(plan, definitions=plan.definitions + (("odd", draw(st.sampled_from(["sum", "mean", "norm"])),
                                                             ("raw", obj)),))
        return Case("unsupported expression", plan, "error", ("must be of a SymPy expression", "cannot compile"))
    if where == "update":
        plan = _with(plan, updates=tuple((t, ("raw", obj)) if t == "param" else (t, r) for t, r in plan.updates))
    else:
        plan = _with(plan, definitions=plan.definitions + (("odd", "define", ("raw", obj)),))
    return Case("unsupported expression", plan, "error", ("not a SymPy expression", "must be a SymPy expression",
                                                          "cannot compile", "is the constant"))


@st.composite
def huge_or_deep(draw, within: bool = False):
    """Beyond the bounds (refused, naming the bound) or, ``within``, up to them (accepted)."""
    plan = draw(small_plans())
    kinds = ["deep chain", "deep expression", "wide", "nested signs"]
    kind = draw(st.sampled_from(kinds if within else kinds + ["many definitions", "many states", "total nodes",
                                                              "atan2 calls"]))
    if kind == "nested signs":  # sign(sign(... + param) + param): comparisons nested in comparisons
        levels = spec_module.MAX_NESTED_COMPARISONS + (0 if within else draw(st.integers(1, 6)))
        definitions, previous = [], ("sym", "grad")
        for k in range(levels):
            definitions.append((f"s{k}", "define", ("sign", ("add", previous, ("mul", ("sym", "param"),
                                                                              ("num", Fraction(k + 1, 3)))))))
            previous = ("sym", f"s{k}")
        plan = _with(plan, definitions=plan.definitions + tuple(definitions),
                     updates=_scale_param_update(plan, previous))
        return Case("deep", plan, "valid" if within else "error", ("MAX_NESTED_COMPARISONS",))
    if kind == "deep chain":  # each definition shallow; written out, as deep as the chain
        depth = spec_module.MAX_DEPTH // 2 - 6 if within else spec_module.MAX_DEPTH // 2 + draw(st.integers(1, 40))
        definitions, previous = [], ("sym", "grad")
        for k in range(depth):
            previous_name = f"d{k}"
            definitions.append((previous_name, "define", ("add", ("abs", previous), ("sym", "param"))))
            previous = ("sym", previous_name)
        plan = _with(plan, definitions=plan.definitions + tuple(definitions),
                     updates=_scale_param_update(plan, ("recip", previous)))
        return Case("deep", plan, "valid" if within else "error", ("MAX_DEPTH",))
    if kind == "deep expression":  # built without evaluation: one expression, as deep as asked
        depth = spec_module.MAX_DEPTH - 6 if within else spec_module.MAX_DEPTH + draw(st.integers(1, 3000))
        expr, levels = grad, 1
        while levels < depth:
            if levels % 3:
                expr, levels = sympy.Abs(expr, evaluate=False), levels + 1
            else:
                expr, levels = sympy.Add(sympy.Mul(expr, param, evaluate=False), 1, evaluate=False), levels + 2
        plan = _with(plan, definitions=plan.definitions + (("deep", "define", ("raw", expr)),),
                     updates=_scale_param_update(plan, ("sym", "deep")))
        return Case("deep", plan, "valid" if within else "error", ("MAX_DEPTH",))
    if kind == "wide":  # a flat sum of many distinct terms
        count = spec_module.MAX_NODES // 4 if within else spec_module.MAX_NODES + draw(st.integers(1, 5000))
        expr = sympy.Add(*(sympy.Max(grad, sympy.Rational(k, 7)) for k in range(count // 12)),
                         *((grad + k) * param for k in range(count // 6)))  # 3 and 5 nodes a term
        plan = _with(plan, definitions=plan.definitions + (("wide", "define", ("raw", expr)),),
                     updates=_scale_param_update(plan, ("recip", ("sym", "wide"))))
        return Case("huge", plan, "valid" if within else "error", ("MAX_NODES",))
    if kind == "many definitions":
        count = spec_module.MAX_DECLARATIONS + draw(st.integers(1, 500))
        definitions = tuple((f"h{k}", "define", ("mul", ("sym", "grad"), ("num", Fraction(k, 3)))) for k in range(count))
        return Case("huge", _with(plan, definitions=plan.definitions + definitions), "error", ("MAX_DECLARATIONS",))
    if kind == "many states":
        count = spec_module.MAX_STATES + draw(st.integers(1, 50))
        states = tuple((f"s{k}_state", 0.0) for k in range(count))
        updates = tuple((f"s{k}_state", ("sym", "grad")) for k in range(count))
        return Case("huge", _with(plan, states=plan.states + states, updates=plan.updates + updates), "error",
                    ("MAX_STATES",))
    if kind == "atan2 calls":
        count = spec_module.MAX_ATAN2 + draw(st.integers(1, 20))
        expr = sympy.Add(*(sympy.atan2(grad, param + k) for k in range(count)))
        plan = _with(plan, definitions=plan.definitions + (("angles", "define", ("raw", expr)),),
                     updates=_scale_param_update(plan, ("sym", "angles")))
        return Case("huge", plan, "error", ("MAX_ATAN2",))
    # several updates, each within the bound, together beyond it
    terms = sympy.Add(*((grad + k) * param for k in range(spec_module.MAX_NODES // 8)))  # 5 nodes a term
    count = spec_module.MAX_TOTAL_NODES // (5 * (spec_module.MAX_NODES // 8)) + 1
    states = tuple((f"big{k}", 0.0) for k in range(count))
    updates = tuple((f"big{k}", ("add", ("raw", terms), ("num", k))) for k in range(count))
    return Case("huge", _with(plan, states=plan.states + states, updates=plan.updates + updates), "error",
                ("MAX_TOTAL_NODES",))


@st.composite
def bad_numbers(draw):
    plan = draw(small_plans())
    where = draw(st.sampled_from(["expression", "default", "state init", "scalar init"]))
    if where == "expression":
        value, match = draw(st.sampled_from([
            (sympy.oo, "non-finite"), (-sympy.oo, "non-finite"), (sympy.nan, "non-finite"), (sympy.zoo, "non-finite"),
            (sympy.Float("inf"), "non-finite"), (sympy.Float("nan"), "non-finite"),
            (sympy.Float("1e400"), "float64's range"), (sympy.Integer(10)**400, "float64's range"),
            (sympy.Rational(1, 10**400), "330 digits"), (sympy.Float("-2e308"), "float64's range"),
            (sympy.Integer(3)**5000, "float64's range"), (sympy.Rational(10**5000 + 1, 10**5000), "float64's range"),
            (sympy.I, "cannot compile"), (sympy.Integer(-8)**sympy.Rational(1, 3), "not a real number"),
            (sympy.sqrt(-2), "cannot compile"), (sympy.log(-1), "cannot compile"),
            (grad**2000, "MAX_EXPONENT"), (grad**sympy.Rational(1, 4097), "MAX_EXPONENT"),
        ]))
        return Case("bad number", _with(plan, updates=_scale_param_update(plan, ("raw", value))), "error", (match,))
    value = draw(st.sampled_from([math.inf, -math.inf, math.nan, 10**400, "0.1", None, 1j, [0.1], sympy.oo,
                                  np.float64("inf"), sympy.Float("1e400"), True if where != "default" else math.nan]))
    if where == "default":
        plan = _with(plan, hyperparameters=plan.hyperparameters + (("bad_default", value),),
                     updates=_scale_param_update(plan, ("sym", "bad_default")))
    elif where == "state init":
        plan = _with(plan, states=plan.states + (("bad_init", value),), updates=plan.updates + (("bad_init",
                                                                                                  ("sym", "grad")),))
    else:
        plan = _with(plan, scalar_states=plan.scalar_states + (("bad_init", value),),
                     updates=plan.updates + (("bad_init", ("sym", "step")),))
    return Case("bad number", plan, "error", ("must be a finite number",))


@st.composite
def good_numbers(draw):
    """Numbers in odd forms that are valid: NumPy scalars, SymPy numbers as defaults, tiny and huge finite floats,
    SymPy's constants, atan2's rewrites."""
    plan = draw(small_plans())
    value = draw(st.sampled_from([np.float32(0.25), np.float64(0.5), np.int64(2), sympy.Float(0.5), sympy.Rational(1, 3),
                                  sympy.Integer(2), 1e-300, 1e300, 5e-324]))
    plan = _with(plan, hyperparameters=plan.hyperparameters + (("odd_default", value),),
                 updates=_scale_param_update(plan, ("mul", ("sym", "odd_default"), ("num", 1e-300)
                                                    if abs(float(value)) > 1e10 else ("num", 1))))
    constant = draw(st.one_of(st.sampled_from(sorted(CONSTANTS)).map(lambda c: ("const", c)),
                              st.sampled_from([("atan1", ("sym", "grad")), ("atan2", ("sym", "grad"), ("sym", "step")),
                                               ("atan2", ("sym", "grad"), ("num", -1.0)),
                                               ("raw", sympy.atan2(grad, numel)), ("raw", sympy.exp(1) ** step),
                                               ("raw", sympy.Float("1e-400"))])))
    return Case("adversarial number", _with(plan, updates=_scale_param_update(plan, constant)), "valid")


@st.composite
def texts(draw):
    """Docs and references: any string is valid, whatever it holds (quotes, backslashes, NUL, line breaks: the module
    holds it as an escaped literal and comments it line by line); anything else is refused naming the field."""
    plan = draw(small_plans())
    where = draw(st.sampled_from(["doc", "reference"]))
    if draw(st.booleans()):
        return Case("text", _with(plan, **{where: draw(st.sampled_from([None, 3, b"bytes", ["a list"]]))}), "error",
                    (f"the {where}",))
    hostile = st.sampled_from(['Adam """ with quotes', "LaTeX \\beta", "a \\x escape", "nul \0 byte", "two\nlines",
                               "carriage\rreturn", "'''\nimport os\n'''", "end \\"])
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
    return Case("text", _with(plan, **{where: draw(st.one_of(hostile, text))}), "valid")


@st.composite
def duplicate_updates(draw):
    plan = draw(small_plans())
    target, recipe = draw(st.sampled_from(plan.updates))
    return Case("duplicate update", _with(plan, updates=plan.updates + ((target, ("sq", ("sym", "grad"))),)), "error",
                ("updated twice",))


@st.composite
def wrong_targets(draw):
    plan = draw(small_plans())
    target = draw(st.sampled_from(
        [("sym", n) for n, _ in plan.hyperparameters] + [("sym", "grad"), ("sym", "step"), ("sym", "numel"),
                                                         ("foreign", "param", {}), ("foreign", "param", {"real": True}),
                                                         ("raw", "param"), ("raw", 3), ("raw", 2 * param)]))
    plan = _with(plan, updates=plan.updates + ((target, ("sq", ("sym", "grad"))),))
    if target == ("foreign", "param", {"real": True}):  # the very symbol param: a duplicate update
        return Case("wrong update target", plan, "error", ("updated twice",))
    return Case("wrong update target", plan, "error", ("cannot update",))


@st.composite
def missing_updates(draw):
    plan = draw(small_plans())
    drop = draw(st.sampled_from([t for t, _ in plan.updates]))
    return Case("missing update", _with(plan, updates=tuple(u for u in plan.updates if u[0] != drop)), "error",
                (f"no update given for {drop}",))


@st.composite
def conditions_as_values(draw):
    plan = draw(small_plans())
    kind = draw(st.sampled_from(["condition in arithmetic", "condition as update", "number as condition",
                                 "condition reduced", "condition definition of a condition", "flag as number"]))
    cond = ("gt", ("sym", "grad"), ("num", 0))
    with_cond = _with(plan, definitions=plan.definitions + (("positive", "define", cond),))
    if kind == "condition in arithmetic":
        return Case("condition as value", _with(with_cond, updates=_scale_param_update(plan, ("sym", "positive"))),
                    "error", ("as a number",))
    if kind == "condition as update":
        return Case("condition as value", _with(plan, updates=tuple(
            (t, cond) if t == "param" else (t, r) for t, r in plan.updates)), "error", ("is a condition",))
    if kind == "number as condition":
        name, default = draw(st.sampled_from(plan.hyperparameters))
        flag = isinstance(default, bool)
        node = ("pw", ((("sym", "grad"), ("sym", name)), (("sym", "param"), ("true",))))
        return Case("number as condition", _with(plan, updates=_scale_param_update(plan, node)),
                    "valid" if flag else "error", ("as a condition",))
    if kind == "flag as number":
        plan = _with(plan, hyperparameters=plan.hyperparameters + (("switch", True),),
                     updates=_scale_param_update(plan, ("sym", "switch")))
        return Case("condition as value", plan, "error", ("uses the flag switch as a number",))
    if kind == "condition reduced":
        plan = _with(with_cond, definitions=with_cond.definitions + (("count_pos", "sum", ("sym", "positive")),),
                     updates=_scale_param_update(plan, ("sym", "count_pos")))
        return Case("condition as value", plan, "error", ("as a number",))
    plan = _with(with_cond, definitions=with_cond.definitions + (("alias", "define", ("sym", "positive")),),
                 updates=_scale_param_update(plan, ("pw", ((("sym", "grad"), ("sym", "alias")), (("num", 0),
                                                                                                  ("true",))))))
    return Case("condition as value", plan, "error", ("is a condition",))


@st.composite
def piecewise_without_default(draw):
    plan = draw(small_plans())
    node = ("raw", sympy.Piecewise((grad, grad > 0), (param, grad < -1)))
    return Case("Piecewise without default", _with(plan, updates=_scale_param_update(plan, node)), "error",
                ("no default branch",))


@st.composite
def odd_reductions(draw):
    """Reductions in odd places: all valid, and compiled."""
    plan = draw(valid_plans(reductions=False, max_leaves=4))
    kind = draw(st.sampled_from(["scalar state from a sum", "sum of a scalar", "sum of a sum", "sum in a condition",
                                 "mean of a flag", "only scalar states read sums", "norm of a constant"]))
    g2 = ("sq", ("sym", "grad"))
    if kind == "scalar state from a sum":
        plan = _with(plan, scalar_states=plan.scalar_states + (("gsum", 0.0),),
                     definitions=plan.definitions + (("gsq", "sum", g2),),
                     updates=plan.updates + (("gsum", ("add", ("sym", "gsum"), ("sym", "gsq"))),))
    elif kind == "only scalar states read sums":
        plan = _with(plan, scalar_states=plan.scalar_states + (("gmax", 0.0),),
                     definitions=plan.definitions + (("gsq", "mean", g2),),
                     updates=plan.updates + (("gmax", ("max", ("sym", "gmax"), ("sym", "gsq"))),))
    elif kind == "sum of a scalar":
        lr = plan.hyperparameters[0][0]
        plan = _with(plan, definitions=plan.definitions + (("lr_total", "sum", ("sym", lr)),),
                     updates=_scale_param_update(plan, ("recip", ("sym", "lr_total"))))
    elif kind == "sum of a sum":
        plan = _with(plan, definitions=plan.definitions + (
            ("first", "mean", g2), ("second", "sum", ("mul", ("sym", "first"), ("sym", "param")))),
                     updates=_scale_param_update(plan, ("recip", ("sym", "second"))))
    elif kind == "sum in a condition":
        plan = _with(plan, definitions=plan.definitions + (("gnorm", "norm", ("sym", "grad")),),
                     updates=_scale_param_update(plan, ("pw", ((("num", 1), ("gt", ("sym", "gnorm"), ("num", 2))),
                                                                (("num", -1), ("true",))))))
    elif kind == "mean of a flag":
        plan = _with(plan, definitions=plan.definitions + (
            ("agree", "define", ("pw", ((("num", 1), ("gt", ("mul", ("sym", "grad"), ("sym", "param")), ("num", 0))),
                                        (("num", 0), ("true",))))),
            ("agreement", "mean", ("sym", "agree"))),
                     updates=_scale_param_update(plan, ("sym", "agreement")))
    else:
        plan = _with(plan, definitions=plan.definitions + (("unit", "norm", ("num", 2)),),
                     updates=_scale_param_update(plan, ("recip", ("sym", "unit"))))
    return Case(f"reduction: {kind}", plan, "valid")


@st.composite
def colliding_options(draw):
    """Options whose added names are taken, or whose needs are not met: refused naming the option."""
    plan = draw(small_plans().filter(_without_lr_and_decay))
    option = draw(st.sampled_from(["amsgrad", "cautious", "decouple_lr", "decoupled_weight_decay"]))
    grad_sq = ("sq", ("sym", "grad"))
    if option == "amsgrad":
        plan = _with(plan, states=tuple(s for s in plan.states if s[0] != "exp_avg_sq") + (("exp_avg_sq", 0.0),),
                     updates=tuple(u for u in plan.updates if u[0] != "exp_avg_sq") + (("exp_avg_sq", grad_sq),))
        where = draw(st.sampled_from(KINDS))
        name = draw(st.sampled_from(["max_exp_avg_sq", "max_exp_avg_sq_new", "max_exp_avg_sq_i", "max_exp_avg_sq_block"]))
        if name == "max_exp_avg_sq_new" and where == "state":
            where = "definition"
        return Case("option collision", _place_name(plan, name, where), "error", ("amsgrad adds",),
                    options={"amsgrad": True})
    if option == "cautious":
        name = draw(st.sampled_from(["cautious_mask", "cautious_scale"]))
        return Case("option collision", _place_name(plan, name, draw(st.sampled_from(KINDS))), "error",
                    ("cautious adds",), options={"cautious": True})
    if option == "decouple_lr":
        plan = _with(plan, hyperparameters=plan.hyperparameters + (("lr_", 0.1), ("weight_decay_", 0.0)))
        plan = _rename(plan, {"lr_": "lr", "weight_decay_": "weight_decay"})
        return Case("option collision", _place_name(plan, "max_lr", draw(st.sampled_from(KINDS))), "error",
                    ("decouple_lr adds",), options={"decouple_lr": True})
    # decoupled_weight_decay with weight_decay in a denominator: setting it to 0 divides by zero
    plan = _with(plan, hyperparameters=plan.hyperparameters + (("lr_", 0.1), ("weight_decay_", 0.5)))
    plan = _rename(plan, {"lr_": "lr", "weight_decay_": "weight_decay"})
    plan = _with(plan, updates=_scale_param_update(plan, ("pow", ("sym", "weight_decay"), ("num", -1))))
    return Case("option collision", plan, "error", ("decoupled_weight_decay",),
                options={"decoupled_weight_decay": True})


def _without_lr_and_decay(plan: Plan) -> bool:
    """Whether ``plan`` leaves the names lr and weight_decay free, for the options that add or need them."""
    return not {"lr", "weight_decay"} & {name for name, _ in plan.hyperparameters}


def _rename(plan: Plan, renames: dict) -> Plan:
    """Rename hyperparameters (dropping existing ones of the new names)."""
    kept = tuple((n, d) for n, d in plan.hyperparameters if n not in renames.values())
    hyper = tuple((renames.get(n, n), d) for n, d in kept)
    return _with(plan, hyperparameters=hyper)


@st.composite
def missing_option_needs(draw):
    plan = draw(small_plans())
    option = draw(st.sampled_from(["amsgrad", "decouple_lr", "decoupled_weight_decay", "nesterov"]))
    names = {n for n, _ in plan.hyperparameters + plan.states}
    if option == "amsgrad" and "exp_avg_sq" in names or option != "amsgrad" and {"lr", "weight_decay"} <= names:
        return Case("option needs", plan, "either", options={option: True})
    match = {"amsgrad": "needs a second-moment state", "nesterov": "unknown option"}.get(option, "needs hyperparameters")
    return Case("option needs", plan, "error", (match,), options={option: True})


@st.composite
def valid_options(draw):
    """Options on random valid rules that meet their needs: compiled."""
    plan = draw(valid_plans(reductions=False, max_leaves=5).filter(_without_lr_and_decay))
    option = draw(st.sampled_from(["amsgrad", "cautious", "decouple_lr"]))
    if option == "amsgrad":
        plan = _with(plan, states=tuple(s for s in plan.states if s[0] != "exp_avg_sq") + (("exp_avg_sq", 0.0),),
                     updates=tuple(u for u in plan.updates if u[0] != "exp_avg_sq") + (
                         ("exp_avg_sq", ("add", ("mul", ("num", 0.9), ("sym", "exp_avg_sq")),
                                         ("mul", ("num", 0.1), ("sq", ("sym", "grad"))))),))
        plan = _with(plan, updates=_scale_param_update(plan, ("recip", ("sym", "exp_avg_sq_new"))))
        plan = _with(plan, updates=tuple(sorted(plan.updates, key=lambda u: u[0] != "exp_avg_sq")))
    elif option == "decouple_lr":
        plan = _with(plan, hyperparameters=tuple(h for h in plan.hyperparameters if h[0] not in ("lr", "weight_decay"))
                     + (("lr", 0.05), ("weight_decay", 0.1)))
        plan = _with(plan, updates=tuple(
            (t, ("sub", ("sub", ("sym", "param"), ("mul", ("sym", "lr"), ("recip", r))),
                 ("mul", ("mul", ("sym", "lr"), ("sym", "weight_decay")), ("sym", "param"))))
            if t == "param" else (t, r) for t, r in plan.updates))
    return Case(f"option: {option}", plan, "either", options={option: True})


MALFORMED = {
    "bad name": bad_names(), "long name": long_names(), "reserved name": reserved_names(),
    "unicode": unicode_lookalikes(), "undeclared symbol": undeclared_symbols(), "unsupported": unsupported(),
    "beyond the bounds": huge_or_deep(), "bad number": bad_numbers(), "duplicate update": duplicate_updates(),
    "wrong update target": wrong_targets(), "missing update": missing_updates(),
    "condition as value": conditions_as_values(), "Piecewise without default": piecewise_without_default(),
    "option collision": colliding_options(), "option needs": missing_option_needs(), "text": texts(),
}
ADVERSARIAL_VALID = {"adversarial number": good_numbers(), "odd reduction": odd_reductions(),
                     "valid option": valid_options()}


@st.composite
def valid_cases(draw):
    plan = draw(valid_plans())
    values = draw(st.sampled_from([{}, {"maximize": True}]))
    return Case("valid rule", plan, "valid", hyperparameters=values)


# --------------------------------------------------------------------------------------------------------------------
# Host-code float semantics: specs whose host block meets a division by zero, an overflow or a negative base under a
# fractional power at the given hyperparameters. The kernels and the oracle (NumPy) give inf or nan there.

HOST_SEMANTICS = "the host code meets a division by zero, an overflow or a negative base under a fractional power, " \
                 "where IEEE float64 (NumPy's, as the kernels' and the oracle's) gives inf or nan"


@st.composite
def host_cases(draw):
    kind = draw(st.sampled_from(["beta1=1", "exp overflow", "negative base", "reduction then division by zero"]))
    lr, beta1 = ("sym", "lr"), ("sym", "beta1")
    hyper = (("lr", 0.1), ("beta1", 0.9))
    m_update = ("exp_avg", ("add", ("mul", beta1, ("sym", "exp_avg")), ("mul", ("sub", ("num", 1), beta1),
                                                                          ("sym", "grad"))))
    if kind == "beta1=1":
        bias = ("sub", ("num", 1), ("pow", beta1, ("sym", "step")))
        plan = Plan(hyperparameters=hyper, states=(("exp_avg", 0.0),), updates=(
            m_update, ("param", ("sub", ("sym", "param"), ("mul", lr, ("mul", ("sym", "exp_avg_new"),
                                                                          ("pow", bias, ("num", -1))))))))
        values = {"beta1": 1.0}
    elif kind == "exp overflow":
        big = draw(st.sampled_from([1000, 800, 5000]))
        plan = Plan(hyperparameters=hyper, updates=(("param", ("sub", ("sym", "param"), (
            "mul", ("fn", "exp", ("mul", lr, ("num", big))), ("sym", "grad")))),))
        values = {"lr": 1.0}
    elif kind == "negative base":
        plan = Plan(hyperparameters=hyper, updates=(("param", ("sub", ("sym", "param"), (
            "mul", ("pow", ("neg", lr), ("num", Fraction(1, 3))), ("sym", "grad")))),))
        values = {"lr": draw(st.sampled_from([0.1, 2.0]))}
    else:  # the first pass stores exp_avg; then the host divides by zero; the parameter must not be left behind
        plan = Plan(hyperparameters=hyper, states=(("exp_avg", 0.0),),
                    definitions=(("gnorm", "norm", ("sym", "grad")),
                                 ("scale", "define", ("pow", ("mul", ("sym", "gnorm"), ("sub", ("num", 1), beta1)),
                                                      ("num", -1)))),
                    updates=(m_update, ("param", ("sub", ("sym", "param"), ("mul", ("sym", "scale"),
                                                                              ("sym", "exp_avg_new"))))))
        values = {"beta1": 1.0}
    return Case(f"host: {kind}", plan, "valid", hyperparameters=values, why=HOST_SEMANTICS)


def cases(kind: str):
    if kind == "malformed":
        return st.one_of(*MALFORMED.values())
    if kind == "adversarial":
        return st.one_of(*ADVERSARIAL_VALID.values())
    if kind == "at the bounds":
        return huge_or_deep(within=True)
    if kind == "valid":
        return valid_cases()
    if kind == "host":
        return host_cases()
    raise ValueError(kind)


# --------------------------------------------------------------------------------------------------------------------
# Running a case.

@dataclasses.dataclass
class Outcome:
    kind: str             # "error" (a clear adamgen error) or "accepted"
    message: str = ""
    variant: object = None


def outcome(case: Case) -> Outcome:
    """Validate, apply the options, generate every target and compile the source. Raises anything that is not a
    ``SpecError``/``GenerateError``: for the caller, a raw exception is a defect."""
    try:
        variant = with_options(as_variant(case.plan.build()), **case.options)
        for target in TARGETS:
            source = generate(variant, target)
            compile(source, f"<{variant.name} {target}>", "exec")
    except (SpecError, GenerateError) as error:
        return Outcome("error", str(error))
    return Outcome("accepted", variant=variant)


def judge(case: Case, result: Outcome) -> str | None:
    """What is wrong with ``result`` for ``case``, or None."""
    if result.kind == "error":
        if case.expect == "valid":
            return f"a valid spec was refused: {result.message}"
        if case.match and not any(fragment in result.message for fragment in case.match):
            return f"the error does not name the problem (expected one of {case.match}): {result.message}"
        return None
    if case.expect == "error":
        return f"a malformed spec was accepted (expected an error with one of {case.match})"
    return None


# --------------------------------------------------------------------------------------------------------------------
# Kernels against the oracle.

STEPS = 3
SIZE = 48
# The bound is first order and per operation; SAFETY covers second-order terms and the oracle's own rounding.
SAFETY = 4.0
UNIT = {"float32": 2.0**-24, "float64": 2.0**-53}
TINY = {"float32": 2.0**-149, "float64": 2.0**-1074}
HUGE = {"float32": 1e37, "float64": 1e306}
ORACLE_DIGITS = 1e-15  # relative error of a Float literal in the oracle's lambdified code


class Roundoff:
    """First-order running error analysis of a variant's definitions over NumPy float64 arrays.

    ``evaluate(inputs)`` returns, per definition symbol, ``(value, sensitivity, unsure)``: the value, a bound on its
    rounding error in units of the dtype's unit roundoff (so the bound in a dtype is ``unit * sensitivity``), and the
    elements whose value rounding could carry across a jump or out of the dtype's range."""

    def __init__(self, variant, dtype: str):
        self.variant = variant
        self.unit = UNIT[dtype]
        self.tiny = TINY[dtype] / self.unit
        self.huge = HUGE[dtype]
        self.flags = {h for h, d in variant.hyperparameters if isinstance(d, bool)}

    def evaluate(self, inputs: dict, shape) -> dict:
        self.shape = shape
        self.env = {}
        for symbol in self.variant.element_symbols:
            self.env[symbol] = (inputs[symbol.name], np.zeros(shape), np.zeros(shape, bool))
        for symbol in self.variant.host_symbols:
            value = inputs[symbol.name]
            exact = symbol in (step, numel) or isinstance(value, bool)
            self.env[symbol] = (value, 0.0 if exact else abs(float(value)), np.zeros(shape, bool) | (
                abs(float(value)) > self.huge))
        results = {}
        with np.errstate(all="ignore"):
            for symbol, expr in self.variant.definitions:
                self.memo = {}
                self.env[symbol] = results[symbol] = self.ev(expr)
        return results

    def rounded(self, value, sensitivity, unsure, rounding):
        """Add ``rounding`` (in units of the unit roundoff) for the operation that produced ``value``."""
        sensitivity = sensitivity + rounding + self.tiny
        unsure = unsure | (np.abs(value) > self.huge) | ~np.isfinite(sensitivity)
        return value, sensitivity, unsure

    def ev(self, node):
        key = node
        if key in self.memo:
            return self.memo[key]
        result = self._ev(node)
        self.memo[key] = result
        return result

    def _ev(self, node):
        none = np.zeros(self.shape, bool)
        if isinstance(node, sympy.Symbol):
            return self.env[node]
        if isinstance(node, (sympy.logic.boolalg.BooleanTrue, sympy.logic.boolalg.BooleanFalse)):
            return bool(node), 0.0, none
        if isinstance(node, sympy.Number):  # rounded to the dtype; the oracle reads Floats printed to 15 digits
            value = float(node)
            exact = node.is_Integer and abs(value) < 2**24
            return value, 0.0 if exact else abs(value) * (1 + ORACLE_DIGITS / self.unit), none | (abs(value) > self.huge)
        if isinstance(node, sympy.core.relational.Relational):
            (a, sa, ua), (b, sb, ub) = self.ev(node.lhs), self.ev(node.rhs)
            value = {"==": np.equal, "!=": np.not_equal, ">": np.greater, "<": np.less, ">=": np.greater_equal,
                     "<=": np.less_equal}[node.rel_op](a, b)
            bound = sa + sb + np.abs(a) + np.abs(b)
            close = (np.abs(a - b) <= self.unit * SAFETY * bound) & (bound > 0)
            return value, 0.0, ua | ub | close | ~np.isfinite(a - b)
        if isinstance(node, (sympy.And, sympy.Or)):
            parts = [self.ev(a) for a in node.args]
            combine = np.logical_and if isinstance(node, sympy.And) else np.logical_or
            value = parts[0][0]
            for p in parts[1:]:
                value = combine(value, p[0])
            return value, 0.0, np.logical_or.reduce([p[2] | none for p in parts])
        if isinstance(node, sympy.Not):
            value, _, unsure = self.ev(node.args[0])
            return np.logical_not(value), 0.0, unsure
        if isinstance(node, sympy.Piecewise):
            chosen = np.zeros(self.shape, bool)
            value, sensitivity, unsure = np.zeros(self.shape), np.zeros(self.shape), np.zeros(self.shape, bool)
            for expr, cond in node.args:
                c, _, cu = self.ev(cond)
                c = np.broadcast_to(c, self.shape)
                take = c & ~chosen
                unsure = unsure | (cu & ~chosen)
                v, s, u = self.ev(expr)
                value = np.where(take, v, value)
                sensitivity = np.where(take, s, sensitivity)
                unsure = unsure | (take & u)
                chosen = chosen | c
            return value, sensitivity, unsure
        args = [self.ev(a) for a in node.args]
        anyunsure = np.logical_or.reduce([u | none for _, _, u in args])
        if isinstance(node, sympy.Add):
            value = sum(v for v, _, _ in args)
            return self.rounded(value, sum(s for _, s, _ in args), anyunsure,
                                len(args) * sum(np.abs(v) for v, _, _ in args))
        if isinstance(node, sympy.Mul):
            value = functools.reduce(np.multiply, [v for v, _, _ in args], 1.0)
            sensitivity = 0.0
            for k, (_, s, _) in enumerate(args):
                others = functools.reduce(np.multiply, [np.abs(v) for j, (v, _, _) in enumerate(args) if j != k], 1.0)
                sensitivity = sensitivity + _times(s, others)
            return self.rounded(value, sensitivity, anyunsure, len(args) * np.abs(value))
        if isinstance(node, sympy.Pow):
            (b, sb, _), (p, sp, _) = args
            value = np.power(b, p)
            sensitivity = _times(sb, np.abs(p * np.power(b, p - 1)))
            if not node.exp.is_Number:
                sensitivity = sensitivity + _times(sp, np.abs(value * np.log(np.abs(b))))
            operations = abs(float(node.exp)) + 1 if node.exp.is_Integer else 3
            return self.rounded(value, sensitivity, anyunsure, min(operations, 12) * np.abs(value))
        if isinstance(node, sympy.exp):
            (x, s, _), = args
            value = np.exp(x)
            return self.rounded(value, _times(s, np.abs(value)), anyunsure, 2 * np.abs(value))
        if isinstance(node, sympy.log):
            (x, s, _), = args
            value = np.log(x)
            return self.rounded(value, _times(s, 1 / np.abs(x)), anyunsure | (x <= 0), 2 * np.abs(value) + 1)
        if isinstance(node, sympy.Abs):
            (x, s, _), = args
            return np.abs(x), s, anyunsure
        if isinstance(node, (sympy.Max, sympy.Min)):
            values = np.broadcast_arrays(*(v for v, _, _ in args))
            pick = np.argmax if isinstance(node, sympy.Max) else np.argmin
            index = pick(np.stack(values), axis=0)
            value = np.choose(index, values)
            sensitivity = np.maximum.reduce([np.broadcast_to(s, self.shape) for _, s, _ in args])
            return value, sensitivity, anyunsure | np.isnan(value)
        if isinstance(node, sympy.sign):
            (x, s, _), = args
            return np.sign(x), 0.0, anyunsure | ((np.abs(x) <= self.unit * SAFETY * s) & (s > 0))
        if isinstance(node, sympy.atan):
            (x, s, _), = args
            value = np.arctan(x)
            return self.rounded(value, _times(s, 1 / (1 + x * x)), anyunsure, 4 * np.abs(value))
        if isinstance(node, sympy.atan2):
            (y, sy, _), (x, sx, _) = args
            value = np.arctan2(y, x)
            r2 = x * x + y * y
            sensitivity = (_times(sy, np.abs(x)) + _times(sx, np.abs(y))) / r2
            near = (np.abs(y) <= self.unit * SAFETY * sy) & ((x < 0) | (np.abs(x) <= self.unit * SAFETY * sx))
            return self.rounded(value, sensitivity, anyunsure | near | (r2 == 0), 4 * np.abs(value) + 1)
        if isinstance(node, ReduceSum):
            (x, s, _), = args
            x, s = np.broadcast_to(x, self.shape), np.broadcast_to(s, self.shape)
            value = np.sum(x, dtype=np.float64)
            count = max(x.size, 1)
            sensitivity = np.sum(s) + min(count, 4096) * np.sum(np.abs(x))
            return self.rounded(value, sensitivity, np.any(anyunsure) | none, 0.0)
        raise TypeError(f"roundoff: no rule for {type(node).__name__}")


def _times(sensitivity, factor):
    """``sensitivity * factor`` with 0 where the sensitivity is 0 (an exact input meets an infinite derivative)."""
    return np.where(np.asarray(sensitivity) == 0, 0.0, sensitivity * factor)


class Mismatch(AssertionError):
    pass


def check_module(case: Case, dtype: str, seed: int = 0, lr_error: float = 0.0, nonfinite: bool = False) -> dict:
    """Load the case's module, step it ``STEPS`` times next to the oracle (each step from the kernel's own state) and
    raise ``Mismatch`` where they disagree beyond the round-off bound, or where the kernel is not finite and the oracle
    is (with ``nonfinite``, also where the oracle is not finite and the kernel is). ``lr_error`` perturbs the kernel's
    ``lr`` (to show that the comparison catches a small error). Returns counts of the elements checked and left out."""
    variant = with_options(as_variant(case.plan.build()), **case.options)
    module = adamgen.load(variant)
    oracle = Oracle(variant)
    roundoff = Roundoff(oracle.variant, dtype)
    rng = np.random.default_rng(seed)
    values = dict(case.hyperparameters)
    kernel_values = dict(values)
    if lr_error:
        kernel_values["lr"] = values.get("lr", oracle.defaults.get("lr")) * (1 + lr_error)
    p = rng.standard_normal(SIZE).astype(dtype)
    state = module.init(p)
    checked = left_out = 0
    for k in range(STEPS):
        g = rng.standard_normal(SIZE).astype(dtype)
        expected_param = p.astype(np.float64)
        expected_state = {"step": state["step"]}
        expected_state.update({name: np.array(state[name], np.float64) for name in oracle.state_names})
        expected_state.update({s.name: float(state[s.name]) for s, _ in oracle.variant.scalar_states})
        inputs = {"param": expected_param.copy(), "grad": g.astype(np.float64), "step": state["step"] + 1,
                  "numel": max(SIZE, 1), **{**oracle.defaults, **values},
                  **{name: expected_state[name].copy() for name in oracle.state_names},
                  **{s.name: expected_state[s.name] for s, _ in oracle.variant.scalar_states}}
        bounds = roundoff.evaluate(inputs, (SIZE,))
        oracle.step(expected_param, g.astype(np.float64), expected_state, **values)
        module.step(p, g, state, **kernel_values)
        for target, new in oracle.variant.updates:
            name = target.name
            actual = p if name == "param" else state[name]
            expected = expected_param if name == "param" else expected_state[name]
            _, sensitivity, unsure = bounds[new]
            if np.ndim(expected) == 0:  # a scalar state: one value, whatever the element
                sensitivity, unsure = np.max(sensitivity), np.any(unsure)
            tolerance = SAFETY * roundoff.unit * np.broadcast_to(sensitivity, np.shape(expected))
            unsure = np.broadcast_to(unsure, np.shape(expected)) | ~np.isfinite(tolerance)
            expected = np.asarray(expected, np.float64)
            actual = np.asarray(actual, np.float64)
            finite = np.isfinite(expected) & ~unsure
            wrong = finite & ~(np.abs(actual - expected) <= tolerance)
            if nonfinite:
                wrong |= ~np.isfinite(expected) & np.isfinite(actual)
            if wrong.any():
                where = np.flatnonzero(wrong)[:5]
                raise Mismatch(f"{case.category}: step {k + 1}, {dtype}, {name}: kernel {actual.ravel()[where]} vs "
                               f"oracle {expected.ravel()[where]} (tolerance {tolerance.ravel()[where]}); "
                               f"{int(wrong.sum())} of {wrong.size} elements\n{case!r}")
            checked += int(finite.sum())
            left_out += int((~finite).sum())
    return {"checked": checked, "left out": left_out}
