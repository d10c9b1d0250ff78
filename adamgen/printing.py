"""Printers: SymPy expressions to Python source for the host block and the element block.

Both subclass SymPy's ``PythonCodePrinter`` in strict mode, so an expression they cannot print raises instead of printing
something wrong. Precision is the printers' concern: the host printer writes float64 Python; the element printer refuses
every literal (lowering passed all numbers in from the host as typed scalars) and writes small integer powers as products,
which keeps a float32 kernel free of float64 operations under Numba's typing rules.
"""

from __future__ import annotations

import dataclasses

import sympy
from sympy.printing.pycode import PythonCodePrinter

from .errors import SpecError
from .lower import Lowered

_SETTINGS = {"strict": True, "fully_qualified_modules": True, "standard": "python3"}


class HostPrinter(PythonCodePrinter):
    """Host code: plain Python float64 arithmetic, run once per step."""

    def __init__(self):
        super().__init__(_SETTINGS)

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Rational(self, expr):
        return f"({expr.p}/{expr.q})"

    def _print_Half(self, expr):
        return "0.5"


class ElementPrinter(PythonCodePrinter):
    """Per-element code for the kernels of every target: arithmetic on typed variables only, never a literal.

    Only functions that Numba compiles in the arguments' own precision on every target are printed; SymPy's other known
    functions (``math.gamma``, ...) would run in float64 and are refused."""

    FUNCTIONS = (sympy.Abs, sympy.Max, sympy.Min, sympy.exp, sympy.log, sympy.atan2, sympy.Piecewise,
                 sympy.And, sympy.Or, sympy.Not, sympy.logic.boolalg.ITE)

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
        return self._nest("max", expr.args)

    def _print_Min(self, expr):
        return self._nest("min", expr.args)

    def _nest(self, name, args):
        first, *rest = args
        return self._print(first) if not rest else f"{name}({self._print(first)}, {self._nest(name, rest)})"

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_literal(self, expr):
        raise SpecError(f"literal {expr} in element code: lowering must pass every number in as a typed scalar")

    _print_Integer = _print_Rational = _print_Float = _print_Half = _print_literal
    _print_One = _print_Zero = _print_NegativeOne = _print_literal


class CpuElementPrinter(ElementPrinter):
    """Element code for the CPU kernels: ``atan2`` calls the module's ``_atan2``, which is a vectorizable polynomial in
    float32 (libm's ``atan2f`` is an opaque call that keeps LLVM from vectorizing the loop: measured 40x slower) and
    ``math.atan2`` in float64."""

    def _print_atan2(self, expr):
        self.helpers.add("atan2")
        return f"_atan2({self._print(expr.args[0])}, {self._print(expr.args[1])})"


ELEMENT_PRINTERS = {"cpu": CpuElementPrinter, "cuda": ElementPrinter}


@dataclasses.dataclass(frozen=True)
class PrintedReduction:
    """A reduce phase as source fragments: its kernel's scalars, reads, temporaries and stores, the per-element values it
    sums (``r<k>``, value), the host scalar holding a typed zero, and the host lines that run once its sums are known."""

    scalars: tuple[tuple[str, bool], ...]
    loads: tuple[tuple[str, str], ...]
    element: tuple[str, ...]
    stores: tuple[tuple[str, str], ...]
    sums: tuple[tuple[str, str], ...]
    zero: str
    host_after: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Printed:
    """A lowered variant as source fragments, ready for any target's template.

    ``host`` runs first; then each of ``reductions`` (a pass over the elements, then host lines); then the update phase,
    described by ``scalars``, ``loads``, ``element`` and ``stores``."""

    host: tuple[str, ...]             # "name = expression" lines, float64
    scalars: tuple[tuple[str, bool], ...]  # kernel scalar arguments and whether each is a flag (bool)
    arrays: tuple[str, ...]           # kernel array arguments
    loads: tuple[tuple[str, str], ...]
    element: tuple[str, ...]          # "t<k> = expression" lines
    stores: tuple[tuple[str, str], ...]
    scalar_updates: tuple[tuple[str, str], ...]
    host_inputs: frozenset            # names of the host inputs read (step, numel, hyperparameters, scalar states)
    reductions: tuple[PrintedReduction, ...] = ()
    helpers: frozenset = frozenset()  # helper functions the element code calls (the printer's ``helpers``)


def print_lowered(lowered: Lowered, element_printer: type[ElementPrinter] = ElementPrinter) -> Printed:
    """Print every block of a lowered variant. Raises ``SpecError`` if anything cannot be printed."""
    host, element = HostPrinter(), element_printer()

    def host_lines(block):
        return tuple(f"{s} = {host.doprint(e)}" for s, e in block)

    def kernel(phase):
        return dict(
            scalars=tuple((str(s), s in lowered.flags) for s in phase.kernel_scalars),
            loads=tuple((str(local), str(array)) for local, array in phase.loads),
            element=tuple(f"{s} = {element.doprint(e)}" for s, e in phase.element),
            stores=tuple((str(array), element.doprint(value)) for array, value in phase.stores),
        )

    reductions = tuple(
        PrintedReduction(**kernel(phase), sums=tuple((str(r), element.doprint(v)) for r, v in phase.sums),
                         zero=str(phase.zero), host_after=host_lines(lowered.host[k + 1]))
        for k, phase in enumerate(lowered.phases[:-1]))
    return Printed(
        host=host_lines(lowered.host[0]),
        **kernel(lowered.update),
        arrays=tuple(str(a) for a in lowered.arrays),
        scalar_updates=tuple((str(s), str(new)) for s, new in lowered.scalar_updates),
        host_inputs=frozenset(str(s) for s in lowered.host_inputs),
        reductions=reductions,
        helpers=frozenset(element.helpers),
    )
