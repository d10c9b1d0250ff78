"""Exact-string tests of every print method of the host and element printers."""

import pytest
import sympy
from sympy import Abs, Max, Min, Piecewise, Rational, sqrt

from adamgen.errors import SpecError
from adamgen.printing import CpuElementPrinter, ElementPrinter, HostPrinter

x, y, z = sympy.symbols("x y z", real=True)
flag = sympy.Symbol("flag")


@pytest.mark.parametrize("expr, text", [
    (sympy.Float(0.96), "0.96"),
    (sympy.Float(1e-8), "1e-08"),
    (sympy.Float("1e400"), "np.inf"),
    (-sympy.Float("1e400") * x, "-np.inf*x"),
    (Rational(1, 3), "(1/3)"),
    (sympy.S.Half * x, "(0.5)*x"),
    (1 - x**y, "1 - x**y"),
    (sqrt(x), "np.sqrt(x)"),
    (1 / sqrt(x), "1/np.sqrt(x)"),
    (x / y, "x/y"),
    (Piecewise((-1, flag), (1, True)), "np.where(flag, -1, 1)"),
    (Piecewise((x, x > 0), (y, y > 0), (z, True)), "np.where((x > 0), x, np.where((y > 0), y, z))"),
    (x > 5, "(x > 5)"),
    (Max(x, y), "np.maximum(x, y)"),
    (Max(x, y, z), "np.maximum(x, np.maximum(y, z))"),
    (Min(x, y), "np.minimum(x, y)"),
    (Abs(x), "np.abs(x)"),
    (sympy.sign(x), "np.sign(x)"),
    (sympy.exp(x), "np.exp(x)"),
    (sympy.log(x), "np.log(x)"),
    (sympy.atan2(x, y), "np.arctan2(x, y)"),
    (sympy.E * x, "np.e*x"),
    (sympy.pi * x, "np.pi*x"),
    (sympy.And(x < y, flag), "np.logical_and(flag, (x < y))"),
    (sympy.Or(x < y, flag), "np.logical_or(flag, (x < y))"),
    (sympy.Not(flag), "np.logical_not(flag)"),
], ids=str)
def test_host_printer(expr, text):
    assert HostPrinter().doprint(expr) == text


def test_host_code_follows_ieee():
    """Host values are NumPy float64, so what would raise in Python (a division by zero, an overflow, a negative base
    to a fractional power) gives inf or nan as the kernels would."""
    import numpy as np
    values = {"x": np.float64(0.0), "y": np.float64(1e308), "z": np.float64(-0.5), "flag": np.True_, "np": np}
    with np.errstate(all="ignore"):
        assert eval(HostPrinter().doprint(1 / x), values) == np.inf
        assert eval(HostPrinter().doprint(10 * y), values) == np.inf
        assert np.isnan(eval(HostPrinter().doprint(z**Rational(5, 2)), values))
        assert eval(HostPrinter().doprint(sympy.exp(1000 + x)), values) == np.inf
        assert eval(HostPrinter().doprint(Piecewise((1 / x, flag), (x, True))), values) == np.inf


def test_host_printer_is_strict():
    with pytest.raises(SpecError, match="gamma is not supported"):
        HostPrinter().doprint(sympy.gamma(x))


@pytest.mark.parametrize("expr, text", [
    (x**2, "x*x"),
    (x**3, "x*x*x"),
    ((x + y)**2, "(x + y)*(x + y)"),
    (sqrt(x), "math.sqrt(x)"),
    (x / sqrt(y), "x/math.sqrt(y)"),
    (x**y, "x**y"),
    ((x + y)**z, "(x + y)**z"),
    (x * y / (z + sqrt(y)), "x*y/(math.sqrt(y) + z)"),
    (-x * y, "-x*y"),
    (x - y, "x - y"),
    (Max(x, y), "_maximum(x, y)"),
    (Max(x, y, z), "_maximum(x, _maximum(y, z))"),
    (Min(x, y), "_minimum(x, y)"),
    (Abs(x), "abs(x)"),
    (Piecewise((x, flag), (y, True)), "((x) if flag else (y))"),
    (sympy.exp(x), "math.exp(x)"),
    (sympy.log(x), "math.log(x)"),
    (sympy.atan2(x, y), "math.atan2(x, y)"),
    (sympy.And(x < y, y < z), "(x < y) and (y < z)"),
    (sympy.Or(x < y, y < z), "(x < y) or (y < z)"),
    (sympy.Not(x < y), "(x >= y)"),
    (sympy.logic.boolalg.ITE(x < y, y < z, x < z), "(((y < z)) if (x < y) else ((x < z)))"),
], ids=str)
def test_element_printer(expr, text):
    assert ElementPrinter().doprint(expr) == text


def test_cpu_element_printer_calls_the_module_atan2():
    printer = CpuElementPrinter()
    assert printer.doprint(x * sympy.atan2(x, y + z)) == "x*_atan2(x, y + z)"
    assert printer.helpers == {"atan2"}
    assert CpuElementPrinter().doprint(x / y) == "x/y"  # everything else as ElementPrinter
    plain = ElementPrinter()
    plain.doprint(sympy.atan2(x, y))
    assert plain.helpers == set()


@pytest.mark.parametrize("expr", [1 - x, 2 * x, x / 2, 0.5 * x, 1 / x, x**-2, x + sympy.Float(1e-8)], ids=str)
def test_element_printer_refuses_literals(expr):
    """A literal in a kernel would be float64 (or an integer that promotes): lowering must have hoisted it."""
    with pytest.raises(SpecError, match="element code"):
        ElementPrinter().doprint(expr)


def test_element_printer_is_strict():
    """SymPy knows math.gamma, but in a float32 kernel it would run in float64."""
    with pytest.raises(SpecError, match="gamma is not supported"):
        ElementPrinter().doprint(sympy.gamma(x))
