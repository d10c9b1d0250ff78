"""Every malformed spec gets a clear SpecError naming the problem, never a raw SymPy or Numba traceback."""

import math

import pytest
import sympy

import adamgen
from adamgen import transforms
from adamgen.errors import GenerateError, SpecError
from adamgen.spec import Spec, grad, param, sqrt, step, validate


def sgd(name="sgd", **defaults):
    spec = Spec(name)
    (lr,) = spec.hyperparameters(lr=defaults.get("lr", 0.1))
    return spec, lr


def test_a_minimal_spec_validates():
    spec, lr = sgd()
    spec.update(param, param - lr * grad)
    variant = validate(spec)
    assert variant.updates == ((param, sympy.Symbol("param_new", real=True)),)


def _error(build):
    with pytest.raises(SpecError) as info:
        validate(build())
    return str(info.value)


def test_undeclared_symbol():
    def build():
        spec, lr = sgd()
        spec.update(param, param - lr * grad * sympy.Symbol("momentum"))
        return spec
    assert "undeclared symbol(s) momentum" in _error(build)


def test_state_without_update():
    def build():
        spec, lr = sgd()
        spec.state("exp_avg")
        spec.update(param, param - lr * grad)
        return spec
    assert "no update given for exp_avg" in _error(build)


def test_parameter_without_update():
    def build():
        spec, lr = sgd()
        m = spec.state("m")
        spec.update(m, grad)
        return spec
    assert "no update given for param" in _error(build)


@pytest.mark.parametrize("target", ["lr", "grad", "step"])
def test_update_to_a_non_state(target):
    def build():
        spec, lr = sgd()
        spec.update(param, param - lr * grad)
        spec.update({"lr": lr, "grad": grad, "step": step}[target], grad)
        return spec
    message = _error(build)
    assert "cannot update" in message and target in message


def test_state_updated_twice():
    def build():
        spec, lr = sgd()
        spec.update(param, param - lr * grad)
        spec.update(param, param)
        return spec
    assert "updated twice" in _error(build)


def test_unprintable_expression():
    def build():
        spec, lr = sgd()
        spec.update(param, param - lr * sympy.gamma(grad))
        return spec
    assert "uses gamma" in _error(build) and "cannot compile" in _error(build)


@pytest.mark.parametrize("value", [sympy.I, sympy.oo, sympy.nan, sympy.zoo])
def test_non_real_or_non_finite_numbers(value):
    def build():
        spec, lr = sgd()
        spec.update(param, param - lr * grad * value)
        return spec
    assert "cannot compile" in _error(build) or "non-finite" in _error(build)


@pytest.mark.parametrize("name", ["my-adam", "class", "3adam", ""])
def test_variant_name_must_be_an_identifier(name):
    def build():
        spec, lr = sgd(name)
        spec.update(param, param - lr * grad)
        return spec
    assert "must be a Python identifier" in _error(build)


@pytest.mark.parametrize("name", ["c0", "t12", "_private", "maximize", "state", "np", "i"])
def test_reserved_names(name):
    def build():
        spec, lr = sgd()
        h = spec.hyperparameter(name, 1.0)
        spec.update(param, param - lr * h * grad)
        return spec
    assert f"the name {name!r} is reserved" in _error(build)


def test_duplicate_names():
    def build():
        spec, lr = sgd()
        spec.hyperparameter("lr", 0.2)
        spec.update(param, param - lr * grad)
        return spec
    assert "declared twice" in _error(build)


# not finite, not a number, or beyond float64 (10**400, 1j, oo)
@pytest.mark.parametrize("default", [math.inf, math.nan, "0.1", None, 10**400, 1j, sympy.oo])
def test_bad_defaults(default):
    def build():
        spec = Spec("sgd")
        lr = spec.hyperparameter("lr", default)
        spec.update(param, param - lr * grad)
        return spec
    assert "must be a finite number" in _error(build)


def test_scalar_state_from_element_values():
    def build():
        spec, lr = sgd()
        total = spec.scalar_state("total", init=0.0)
        spec.update(total, total + grad)
        spec.update(param, param - lr * grad)
        return spec
    assert "scalar state total must be updated from per-tensor values only" in _error(build)


def _factored(update_row=None, update_col=None, extra=None):
    """An SGD spec with a row and a column state, their updates given (by default, their row and column means of
    grad**2)."""
    def build():
        spec, lr = sgd()
        row, col = spec.row_state("row_moment"), spec.col_state("col_moment")
        spec.update(row, update_row(spec, row) if update_row else spec.row_mean("row_mean", grad**2))
        spec.update(col, update_col(spec, col) if update_col else spec.col_mean("col_mean", grad**2))
        spec.update(param, param - lr * grad * (extra(spec, row, col) if extra else 1))
        return spec
    return build


def test_factored_spec_validates():
    from adamgen.spec import validate
    variant = validate(_factored()())
    assert variant.factored and [s.name for s, _ in variant.row_states] == ["row_moment"]


@pytest.mark.parametrize("update_row, update_col, extra, message", [
    (lambda spec, row: row + grad, None, None, "row state row_moment must be updated from values with one per row at most"),
    (lambda spec, row: row + spec.col_mean("col_g", grad), None, None, "not from values with one per element"),
    (None, lambda spec, col: col * spec.row_sum("row_g", grad), None, "column state col_moment must be updated"),
    (None, None, lambda spec, row, col: spec.rows_mean("mean_g", grad), "which has one value per element"),
    (None, None, lambda spec, row, col: spec.cols_mean("mean_r", row), "which has one value per row"),
])
def test_factored_levels(update_row, update_col, extra, message):
    assert message in _error(_factored(update_row, update_col, extra))


def test_scalar_state_from_row_values():
    def build():
        spec, lr = sgd()
        total = spec.scalar_state("total", init=0.0)
        spec.update(total, total + spec.row_sum("row_g", grad))
        spec.update(param, param - lr * grad)
        return spec
    assert "not from values with one per row" in _error(build)


@pytest.mark.parametrize("expr", ["not an expression", [1, 2], True])
def test_non_sympy_expression(expr):
    def build():
        spec, lr = sgd()
        spec.update(param, expr)
        return spec
    assert "param_new" in _error(build)


def test_not_a_spec():
    with pytest.raises(SpecError, match="expected an adamgen.spec.Spec"):
        validate("adam")


def test_amsgrad_needs_a_second_moment():
    spec, lr = sgd()
    spec.update(param, param - lr * grad)
    with pytest.raises(SpecError, match="amsgrad needs a second-moment state named exp_avg_sq"):
        transforms.amsgrad(validate(spec))


def test_decoupled_weight_decay_needs_weight_decay():
    spec, lr = sgd()
    spec.update(param, param - lr * grad)
    with pytest.raises(SpecError, match="needs hyperparameters lr and weight_decay"):
        transforms.decoupled_weight_decay(validate(spec))


def test_decoupled_weight_decay_refuses_non_l2_use_of_the_parameter():
    spec = Spec("odd")
    lr, weight_decay = spec.hyperparameters(lr=0.1, weight_decay=0.0)
    m = spec.state("m")
    spec.update(m, m + param * grad)
    spec.update(param, param - lr * (grad + weight_decay * param))
    with pytest.raises(SpecError, match="still reads the parameter"):
        transforms.decoupled_weight_decay(validate(spec))


def test_unknown_variant_option_and_target():
    with pytest.raises(GenerateError, match="adamz: no such spec file, and not a built-in variant"):
        adamgen.load("adamz")
    with pytest.raises(GenerateError, match="unknown option"):
        adamgen.load("adam", nesterov=True)
    with pytest.raises(GenerateError, match="unknown target"):
        adamgen.load("adam", target="tpu")


def test_spec_file_errors(tmp_path):
    missing = tmp_path / "nospec.py"
    missing.write_text("x = 1\n")
    with pytest.raises(SpecError, match="must define a module-level `spec`"):
        adamgen.load(missing)
    broken = tmp_path / "broken.py"
    broken.write_text("from adamgen.spec import Spec\nspec = Spec('broken'\n")
    with pytest.raises(SpecError, match="broken.py: running the spec file failed: SyntaxError"):
        adamgen.load(broken)
    with pytest.raises(GenerateError, match="no such spec file"):
        adamgen.load(tmp_path / "absent.py")


def test_sqrt_of_a_hyperparameter_only_expression_is_host_side():
    """Not an error: a scalar-only sqrt is legal and lands in the host block."""
    spec, lr = sgd()
    spec.update(param, param - sqrt(lr) * grad)
    assert validate(spec).name == "sgd"


def test_piecewise_needs_a_default_branch():
    def build():
        spec, lr = sgd()
        spec.update(param, sympy.Piecewise((param - lr * grad, grad > 0)))
        return spec
    assert "has no default branch" in _error(build)


def test_an_update_must_be_a_number_not_a_condition():
    def build():
        spec, lr = sgd()
        spec.update(param, grad > 0)
        return spec
    assert "the new value of param is a condition" in _error(build)


def test_large_integer_powers_compile(cache):
    import numpy as np

    spec, lr = sgd()
    spec.update(param, param - lr * grad**10)
    module = adamgen.load(spec)
    p = np.zeros(3, np.float32)
    module.step(p, np.array([1.0, -2.0, 0.5], np.float32), module.init(p))
    np.testing.assert_allclose(p, -0.1 * np.array([1.0, 1024.0, 0.5**10]), rtol=1e-6)


def _with_hyperparameter(name):
    spec, lr = sgd()
    h = spec.hyperparameter(name, 0.5)
    spec.update(param, param - lr * h * grad)
    return spec


@pytest.mark.parametrize("name, reason", [
    ("max", "a Python builtin"), ("bool", "a Python builtin"), ("range", "a Python builtin"),
    ("CHUNK", "a name the generated module uses"), ("PARALLEL_THRESHOLD", "a name the generated module uses"),
    ("sys", "a name the generated module uses"), ("scratch", "a name the generated module uses"), ("grad_i", "the kernels' local for array grad"),
    ("param_block", "the kernels' local for array param"), ("r3", "c<k>, t<k> and r<k>")])
def test_names_of_the_generated_code_are_reserved(name, reason):
    message = _error(lambda: _with_hyperparameter(name))
    assert f"the name {name!r} is reserved for the generated code ({reason}" in message


def test_a_state_reserves_the_kernels_locals_derived_from_its_name():
    def build():
        spec, lr = sgd()
        m = spec.state("m")
        m_i = spec.hyperparameter("m_i", 0.5)
        spec.update(m, m_i * grad)
        spec.update(param, param - lr * m)
        return spec
    assert "the name 'm_i' is reserved for the generated code (the kernels' local for array m)" in _error(build)


@pytest.mark.parametrize("name, normal", [("ｉ", "i"), ("ｍａｘ", "max"), ("β₁", "β1"), ("ℓr", "lr")])
def test_names_are_compared_as_python_reads_them(name, normal):
    message = _error(lambda: _with_hyperparameter(name))
    assert f"Python reads the name {name!r} as {normal!r} (NFKC normalisation)" in message


def test_letters_that_only_look_alike_are_other_names():
    cyrillic_i = "\u0456"  # і: Python reads it as itself, a name other than i
    assert validate(_with_hyperparameter(cyrillic_i)).hyperparameters[-1][0].name == cyrillic_i


@pytest.mark.parametrize("number, message", [
    (sympy.Float("1e400"), "out of float64's range"), (sympy.Integer(10)**400, "out of float64's range"),
    (sympy.Integer(-8)**sympy.Rational(1, 3), "which is not a real number"), (sympy.zoo, "non-finite number zoo"),
    (grad**2000, "MAX_EXPONENT")])
def test_numbers_beyond_float64_are_refused(number, message):
    def build():
        spec, lr = sgd()
        spec.update(param, param - lr * grad * number)
        return spec
    assert message in _error(build)


def test_a_condition_is_not_a_number_and_a_number_is_not_a_condition():
    def condition_as_number():
        spec, lr = sgd()
        positive = spec.define("positive", grad > 0)
        spec.update(param, param - lr * grad * positive)
        return spec
    assert "uses the condition positive as a number" in _error(condition_as_number)

    def number_as_condition():
        spec, lr = sgd()
        spec.update(param, sympy.Piecewise((param, lr), (param - lr * grad, True)))
        return spec
    assert "uses lr as a condition" in _error(number_as_condition)


def test_a_flag_is_a_condition_not_a_number():
    def build():
        spec, lr = sgd()
        nesterov = spec.hyperparameter("nesterov", True)
        spec.update(param, param - lr * grad * (1 + nesterov))
        return spec
    assert "uses the flag nesterov as a number; write Piecewise((1, nesterov), (0, True))" in _error(build)


def test_comparisons_nested_in_comparisons_are_bounded():
    def build():
        spec, lr = sgd()
        inner = spec.define("inner", sympy.sign(grad + param))
        middle = spec.define("middle", sympy.sign(inner + 2 * param))
        spec.update(param, param - lr * sympy.sign(middle - param))
        return spec
    assert "nests comparisons 3 deep" in _error(build) and "(MAX_NESTED_COMPARISONS)" in _error(build)


def test_symbols_that_are_not_the_declared_ones():
    def lookalike():
        spec, lr = sgd()
        spec.update(param, param - sympy.Symbol("lr") * grad)
        return spec
    assert "uses a SymPy symbol lr that is not the declared lr" in _error(lookalike)

    def later():
        spec, lr = sgd()
        early = spec.define("early", grad + sympy.Symbol("late", real=True))
        spec.define("late", grad**2)
        spec.update(param, param - lr * early)
        return spec
    assert "early reads late, which is defined after it" in _error(later)


def test_an_update_target_given_by_name():
    def build():
        spec, lr = sgd()
        spec.update("param", param - lr * grad)
        return spec
    assert "cannot update 'param': give the symbol that declared it" in _error(build)


@pytest.mark.parametrize("doc, reference, message", [
    (None, "", "the doc must be a string"), ("", b"torch.optim.Adam", "the reference must be a string")])
def test_docs_and_references_must_be_text(doc, reference, message):
    """Any text is accepted (tests/test_hostile_text.py: it stays text in the module); only non-text is refused."""
    def build():
        spec = Spec("sgd", doc=doc, reference=reference)
        lr = spec.hyperparameter("lr", 0.1)
        spec.update(param, param - lr * grad)
        return spec
    assert message in _error(build)


def test_names_must_be_strings():
    with pytest.raises(SpecError, match="the name of a state must be a string, got int 3"):
        Spec("sgd").state(3)


@pytest.mark.parametrize("option, spec_name, kind", [
    ("amsgrad", "max_exp_avg_sq", "state"), ("amsgrad", "max_exp_avg_sq_i", "hyperparameter"),
    ("cautious", "cautious_mask", "definition"), ("decouple_lr", "max_lr", "scalar state")])
def test_options_refuse_names_they_add_that_are_taken(option, spec_name, kind):
    spec = Spec("taken")
    lr, weight_decay = spec.hyperparameters(lr=0.1, weight_decay=0.0)
    exp_avg_sq = spec.state("exp_avg_sq")
    spec.update(exp_avg_sq, grad**2)
    extra = {"state": spec.state, "scalar state": lambda n: spec.scalar_state(n, 0.0),
             "hyperparameter": lambda n: spec.hyperparameter(n, 0.5),
             "definition": lambda n: spec.define(n, 2 * grad)}[kind](spec_name)
    if kind in ("state", "scalar state"):
        spec.update(extra, grad if kind == "state" else step)
        extra = 1
    spec.update(param, param - lr * (grad + weight_decay * param) * extra / sqrt(exp_avg_sq + 1))
    with pytest.raises(SpecError, match=f"{option} adds the"):
        adamgen.load(spec, **{option: True})


def test_decoupled_weight_decay_refuses_a_division_by_weight_decay():
    spec = Spec("odd")
    lr, weight_decay = spec.hyperparameters(lr=0.1, weight_decay=0.5)
    spec.update(param, param - lr * grad / weight_decay)
    with pytest.raises(SpecError, match="decoupled_weight_decay on variant 'odd': the expression for param_new contains "
                                        "the non-finite number zoo"):
        transforms.decoupled_weight_decay(validate(spec))


def test_sympy_constants_and_rewrites_compile(cache):
    """exp(1) is E, atan2(1, 1) is pi/4, atan2(grad, step) is atan(grad/step) in SymPy: all valid."""
    import numpy as np

    from adamgen.oracle import Oracle
    from adamgen.spec import atan2, exp

    spec, lr = sgd()
    spec.update(param, param - lr * (exp(1) * grad + atan2(1, 1) + sympy.EulerGamma * atan2(grad, step)
                                     + atan2(grad, 1)))
    module, oracle = adamgen.load(spec), Oracle(spec)
    g = np.array([0.5, -2.0, 3.0])
    p, q = np.zeros(3), np.zeros(3)
    module.step(p, g, module.init(p))
    oracle.step(q, g, oracle.init(q))
    expected = -0.1 * (math.e * g + math.pi / 4 + 0.5772156649015329 * np.arctan(g) + np.arctan(g))
    np.testing.assert_allclose(p, expected, rtol=1e-13)
    np.testing.assert_allclose(q, expected, rtol=1e-13)


def test_a_scalar_state_fed_by_a_reduction(cache):
    import numpy as np

    spec, lr = sgd()
    total = spec.scalar_state("total", 0.0)
    squares = spec.sum("squares", grad**2)
    spec.update(total, total + squares)
    spec.update(param, param - lr * grad)
    module = adamgen.load(spec)
    p, g = np.zeros(4, np.float32), np.array([1.0, 2.0, -3.0, 0.5], np.float32)
    state = module.init(p)
    module.step(p, g, state)
    module.step(p, g, state)
    assert state["total"] == pytest.approx(2 * 14.25)
    np.testing.assert_allclose(p, -0.2 * g, rtol=1e-6)
