"""Printers: SymPy expressions to Python source for the host block and the element block.

Both subclass SymPy's ``PythonCodePrinter`` in strict mode, so an expression they cannot print raises instead of printing
something wrong. Precision is the printers' concern: the host printer writes float64 Python; the element printer refuses
every literal (lowering passed all numbers in from the host as typed scalars) and writes small integer powers as products,
which keeps a float32 kernel free of float64 operations under Numba's typing rules.
"""

from __future__ import annotations

import dataclasses
import math

import sympy
from sympy.printing.pycode import PythonCodePrinter

from .errors import SpecError
from .lower import GroupTotal, Lowered, SliceMean
from .spec import COL, HOST, ROW, SLICE, Evaluated, HighHalf, LowHalf, RandomlyStored, Stored

# What the host code calls each level (adamgen.runtime.factored's _Layout.spread).
_LEVEL_WORDS = {HOST: "tensor", SLICE: "slice", ROW: "row", COL: "col"}

_SETTINGS = {"strict": True, "fully_qualified_modules": True, "standard": "python3"}


class HostPrinter(PythonCodePrinter):
    """Host code: NumPy float64 arithmetic, run once per step on one value per tensor (a scalar for ``step``, an array
    for many tensors).

    The inputs are NumPy float64 values, so arithmetic follows IEEE as the kernels do: a division by zero or an overflow
    gives inf or nan instead of raising halfway through a step. Functions are NumPy's (``np.sqrt``, ``np.maximum``,
    which propagate nan like the oracle and torch), and a ``Piecewise`` is an ``np.where`` over every branch."""

    FUNCTIONS = {"exp": "np.exp", "log": "np.log", "Abs": "np.abs", "sign": "np.sign", "atan2": "np.arctan2",
                 "atan": "np.arctan",  # SymPy writes atan2(y, x) with x > 0 as atan(y/x)
                 "GroupTotal": "np.sum",  # a scalar for step, the tensors' sums for step_many: their total
                 "SliceMean": "_layout.slice_mean"}  # (printed by _print_SliceMean)

    def __init__(self, levels: dict | None = None, level=HOST):
        super().__init__(_SETTINGS)
        self.levels = levels or {}  # host symbols with one value per slice, row or column
        self.level = level          # the level of the value being printed: lower-level symbols are spread to it

    def _print_Symbol(self, expr):
        name = super()._print_Symbol(expr)
        own = self.levels.get(expr, HOST)
        if own == self.level or self.level == HOST:
            return name
        return f"_layout.spread({name}, {_LEVEL_WORDS[own]!r}, {_LEVEL_WORDS[self.level]!r})"

    def _print(self, expr, **kwargs):
        if expr.is_Function and not isinstance(expr, (sympy.Max, sympy.Min, sympy.Piecewise, sympy.And, sympy.Or, sympy.Not)) \
                and type(expr).__name__ not in self.FUNCTIONS:
            raise SpecError(f"cannot print {expr} in host code: {type(expr).__name__} is not supported")
        return super()._print(expr, **kwargs)

    def _print_Function(self, expr):
        name = self.FUNCTIONS[type(expr).__name__]
        return f"{name}({', '.join(self._print(arg) for arg in expr.args)})"

    _print_exp = _print_log = _print_Abs = _print_sign = _print_atan2 = _print_atan = _print_Function
    _print_GroupTotal = _print_Function

    def _print_SliceMean(self, expr):
        """The mean over each slice's rows (columns) of a value printed with one value per row (column)."""
        value, axis = expr.args
        inner = HostPrinter(self.levels, COL if axis else ROW)
        return f"_layout.slice_mean({inner.doprint(value)}, {int(axis)})"

    def _print_Integer(self, expr):
        """An integer as Python writes it up to 2**53, beyond that as the float64 that host arithmetic makes of it
        anyway (inf beyond float64's range: inlining can expand a power of a large coefficient into thousands of
        digits)."""
        if abs(expr.p) <= 2**53:
            return str(expr.p)
        try:
            return self._print_Float(sympy.Float(float(expr.p)))
        except OverflowError:
            return "np.inf" if expr.p > 0 else "-np.inf"

    def _print_Pow(self, expr, rational=False):
        if expr.exp == sympy.S.Half:
            return f"np.sqrt({self._print(expr.base)})"
        if expr.exp == -sympy.S.Half:
            return f"1/np.sqrt({self._print(expr.base)})"
        return super()._print_Pow(expr, rational=rational)

    def _print_Max(self, expr):
        return self._nest("np.maximum", expr.args)

    def _print_Min(self, expr):
        return self._nest("np.minimum", expr.args)

    def _nest(self, name, args):
        first, *rest = args
        return self._print(first) if not rest else f"{name}({self._print(first)}, {self._nest(name, rest)})"

    def _print_Piecewise(self, expr):
        (value, condition), *rest = expr.args
        if condition == sympy.true:
            return self._print(value)
        return f"np.where({self._print(condition)}, {self._print(value)}, {self._print(sympy.Piecewise(*rest))})"

    def _print_And(self, expr):
        return self._nest("np.logical_and", expr.args)

    def _print_Or(self, expr):
        return self._nest("np.logical_or", expr.args)

    def _print_Not(self, expr):
        return f"np.logical_not({self._print(expr.args[0])})"

    def _print_Float(self, expr):
        value = float(expr)
        if math.isinf(value):
            return "np.inf" if value > 0 else "-np.inf"
        return repr(value)

    def _print_Rational(self, expr):
        return f"({expr.p}/{expr.q})"

    def _print_Half(self, expr):
        return "0.5"

    def _print_Exp1(self, expr):
        return "np.e"

    def _print_Pi(self, expr):
        return "np.pi"


class ElementPrinter(PythonCodePrinter):
    """Per-element code for the kernels of every target: arithmetic on typed variables only, never a literal.

    Only functions that Numba compiles in the arguments' own precision on every target are printed; SymPy's other known
    functions (``math.gamma``, ...) would run in float64 and are refused."""

    FUNCTIONS = (sympy.Abs, sympy.Max, sympy.Min, sympy.exp, sympy.log, sympy.atan2, sympy.Piecewise,
                 sympy.And, sympy.Or, sympy.Not, sympy.logic.boolalg.ITE, Stored, RandomlyStored, Evaluated,
                 HighHalf, LowHalf)
    INDEX = "i"  # the element's index in its tensor, in the kernels' loops

    def __init__(self):
        super().__init__(_SETTINGS)
        self.helpers = set()  # helper functions of the generated module that the printed code calls

    def _print(self, expr, **kwargs):
        if expr.is_Function and not isinstance(expr, self.FUNCTIONS):
            raise SpecError(f"cannot print {expr} in element code: {type(expr).__name__} is not supported per element")
        return super()._print(expr, **kwargs)

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent == sympy.S.Half:
            return f"math.sqrt({self._print(base)})"
        if exponent.is_Integer and exponent > 0:
            if exponent > 8:
                raise SpecError(f"cannot print {expr}: integer powers above 8 must be written with a scalar exponent")
            factor = self.parenthesize(base, sympy.printing.precedence.PRECEDENCE["Mul"], strict=False)
            return "*".join([factor] * int(exponent))
        if exponent.is_number:  # a negative power reaching here has no numerator to divide
            raise SpecError(f"cannot print {expr} in element code: lowering must give it a numerator")
        precedence = sympy.printing.precedence.PRECEDENCE["Pow"]
        return f"{self.parenthesize(base, precedence, strict=True)}**{self.parenthesize(exponent, precedence)}"

    def _print_Max(self, expr):
        """The runtime's NaN-propagating ``_maximum``, as torch.maximum and NumPy's maximum (numba's ``max(a, b)``
        drops a NaN ``b``)."""
        return self._nest("_maximum", expr.args)

    def _print_Min(self, expr):
        return self._nest("_minimum", expr.args)

    def _nest(self, name, args):
        first, *rest = args
        return self._print(first) if not rest else f"{name}({self._print(first)}, {self._nest(name, rest)})"

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_Stored(self, expr):
        """Rounded to the parameter array's format and widened back (the kernels' local of that array is
        ``param_block``)."""
        return f"_load(_stored({self._print(expr.args[0])}, param_block))"

    def _print_RandomlyStored(self, expr):
        """Rounded with the random bits of (seed, step, tensor ``j``, element) and widened back."""
        value, seed, step = (self._print(arg) for arg in expr.args)
        return f"_load(_stored_randomly({value}, param_block, {seed}, {step}, j, {self.INDEX}))"

    def _print_HighHalf(self, expr):
        return f"_high_half({self._print(expr.args[0])}, param_block)"

    def _print_LowHalf(self, expr):
        return f"_low_half({self._print(expr.args[0])}, param_block)"

    def _print_Evaluated(self, expr):
        return f"({self._print(expr.args[0])})"

    def _print_literal(self, expr):
        raise SpecError(f"literal {expr} in element code: lowering must pass every number in as a typed scalar")

    _print_Integer = _print_Rational = _print_Float = _print_Half = _print_literal
    _print_One = _print_Zero = _print_NegativeOne = _print_literal


class CpuElementPrinter(ElementPrinter):
    """Element code for the CPU kernels: ``atan2`` calls the module's ``_atan2``, which is a vectorizable polynomial in
    float32 (libm's ``atan2f`` is an opaque call that keeps LLVM from vectorizing the loop: measured 40x slower) and
    ``math.atan2`` in float64."""

    INDEX = "start + i"  # a CPU kernel's loop counts from its chunk's start

    def _print_atan2(self, expr):
        self.helpers.add("atan2")
        return f"_atan2({self._print(expr.args[0])}, {self._print(expr.args[1])})"


@dataclasses.dataclass(frozen=True)
class PrintedPhase:
    """One pass over the elements as source fragments.

    scalars:    the kernel's host values, in argument order, each (name, whether it is a flag).
    views:      the arrays whose elements the pass reads or writes (each a ``<array>_block`` in the kernels).
    loads:      (local, value) reads at the start of each element (``_load(<array>_block[i])``; the parameter with
                a remainder, the float32 value the two hold); element: ``t<k> = ...`` lines;
    stores:     (array, value) writes at the end of each element.
    sums:       (``r<k>``, per-element value) summed over each tensor (reduce phases only), from the typed zero ``zero``.
    host_after: host lines that run once the sums are known (reduce phases only).
    slice_values, row_values, col_values: host values with one value per slice, row or column that the pass reads
                (factored variants); row_sums, col_sums: as ``sums``, along each row and down each column.
    """

    scalars: tuple[tuple[str, bool], ...]
    views: tuple[str, ...]
    loads: tuple[tuple[str, str], ...]
    element: tuple[str, ...]
    stores: tuple[tuple[str, str], ...]
    sums: tuple[tuple[str, str], ...] = ()
    zero: str | None = None
    host_after: tuple[str, ...] = ()
    slice_values: tuple[str, ...] = ()
    row_values: tuple[str, ...] = ()
    col_values: tuple[str, ...] = ()
    row_sums: tuple[tuple[str, str], ...] = ()
    col_sums: tuple[tuple[str, str], ...] = ()

    @property
    def reduces(self) -> bool:
        """Whether the pass sums anything (over tensors, rows or columns)."""
        return bool(self.sums or self.row_sums or self.col_sums)

    @property
    def values(self) -> tuple[str, ...]:
        """The scalars that are numbers (passed in the arrays' dtype)."""
        return tuple(name for name, flag in self.scalars if not flag)

    @property
    def flags(self) -> tuple[str, ...]:
        """The scalars that are flags (passed as bools)."""
        return tuple(name for name, flag in self.scalars if flag)


@dataclasses.dataclass(frozen=True)
class Printed:
    """A lowered variant as source fragments, ready for any target's template.

    ``host`` runs first; then each phase in order (a pass over the elements; after a reduce phase, its ``host_after``
    lines); the last phase is the update."""

    host: tuple[str, ...]                 # "name = expression" lines, float64 NumPy
    arrays: tuple[str, ...]               # kernel array arguments: param, grad, states
    phases: tuple[PrintedPhase, ...]      # reduce phases, then the update phase
    scalar_updates: tuple[tuple[str, str], ...]
    host_inputs: frozenset                # names of the host inputs read (step, numel, hyperparameters, scalar states)
    helpers: frozenset = frozenset()      # runtime modules the element code calls (the printer's ``helpers``)
    grouped: bool = False                 # whether a reduction adds over every tensor stepped together (GroupSum)
    factored: bool = False                # whether there are row or column states or reductions
    # Per scalar update: the level of the state ("tensor", "row", "col") and of its new value (which may be lower).
    scalar_levels: tuple[tuple[str, str], ...] = ()

    @property
    def reductions(self) -> tuple[PrintedPhase, ...]:
        return self.phases[:-1]

    @property
    def update(self) -> PrintedPhase:
        return self.phases[-1]


def print_lowered(lowered: Lowered, element_printer: type[ElementPrinter] = ElementPrinter) -> Printed:
    """Print every block of a lowered variant. Raises ``SpecError`` if anything cannot be printed."""
    element = element_printer()
    levels = lowered.levels
    remainder = next((str(s) for s in lowered.variant.remainders), None)

    def host_lines(block):
        return tuple(f"{s} = {HostPrinter(levels, levels.get(s, HOST)).doprint(e)}" for s, e in block)

    def by_level(symbols, wanted):
        return tuple(str(s) for s in symbols if levels.get(s, HOST) == wanted)

    def load(array):
        """The value of an element of ``array`` in the compute dtype: the parameter with a remainder (master weights)
        as the float32 value the two hold together."""
        value = f"_load({array}_block[i])"
        if array == "param" and remainder is not None:
            value = f"_joined({value}, _load({remainder}_block[i]), param_block)"
        return value

    def phase(k, lowered_phase):
        last = k == len(lowered.phases) - 1
        read = [str(array) for _, array in lowered_phase.loads]
        if "param" in read and remainder is not None:
            read.append(remainder)
        written = [str(array) for array, _ in lowered_phase.stores]
        conditions = [s for s in lowered_phase.kernel_scalars if levels.get(s, HOST) != HOST and s in lowered.flags]
        if conditions:
            raise SpecError(f"{lowered.variant.name}: the condition {conditions[0]} has one value per "
                            f"{_LEVEL_WORDS[levels[conditions[0]]]}; kernels take conditions with one value per "
                            "tensor: write it as a number (Piecewise((1, condition), (0, True)))")
        return PrintedPhase(
            scalars=tuple((str(s), s in lowered.flags) for s in lowered_phase.kernel_scalars
                          if levels.get(s, HOST) == HOST),
            views=tuple(dict.fromkeys(read + written)),
            loads=tuple((str(local), load(str(array))) for local, array in lowered_phase.loads),
            element=tuple(f"{s} = {element.doprint(e)}" for s, e in lowered_phase.element),
            stores=tuple((str(array), element.doprint(value)) for array, value in lowered_phase.stores),
            sums=tuple((str(r), element.doprint(v)) for r, v in lowered_phase.sums),
            zero=None if lowered_phase.zero is None else str(lowered_phase.zero),
            host_after=() if last else host_lines(lowered.host[k + 1]),
            slice_values=by_level(lowered_phase.kernel_scalars, SLICE),
            row_values=by_level(lowered_phase.kernel_scalars, ROW),
            col_values=by_level(lowered_phase.kernel_scalars, COL),
            row_sums=tuple((str(r), element.doprint(v)) for r, v in lowered_phase.row_sums),
            col_sums=tuple((str(r), element.doprint(v)) for r, v in lowered_phase.col_sums),
        )

    return Printed(
        host=host_lines(lowered.host[0]),
        arrays=tuple(str(a) for a in lowered.arrays),
        phases=tuple(phase(k, p) for k, p in enumerate(lowered.phases)),
        scalar_updates=tuple((str(s), str(new)) for s, new in lowered.scalar_updates),
        host_inputs=frozenset(str(s) for s in lowered.host_inputs),
        helpers=frozenset(element.helpers),
        grouped=any(e.has(GroupTotal) for block in lowered.host for _, e in block),
        factored=lowered.variant.factored,
        scalar_levels=tuple((_LEVEL_WORDS[levels.get(s, HOST)], _LEVEL_WORDS[levels.get(new, HOST)])
                            for s, new in lowered.scalar_updates),
    )
