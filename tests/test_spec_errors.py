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


@pytest.mark.parametrize("default", [math.inf, math.nan, "0.1", None])
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
    assert "scalar state total must be updated from scalars only" in _error(build)


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
