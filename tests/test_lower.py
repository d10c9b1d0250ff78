"""Lowering guarantees: numbers and scalar-only subexpressions leave the element block; host code keeps spec names."""

import pytest
import sympy

from adamgen.lower import lower
from adamgen.spec import Spec, grad, param, sqrt, step, validate
from adamgen.transforms import maximize
from adamgen.variants import builtin_variants

BUILTINS = {variant.name: variant for _, _, variant in builtin_variants()}


def _element_exprs(lowered):
    return [e for phase in lowered.phases for _, e in (*phase.element, *phase.stores, *phase.sums)]


def _host(lowered):
    return [assignment for block in lowered.host for assignment in block]


@pytest.mark.parametrize("name", BUILTINS)
def test_no_literal_in_element_block(name):
    lowered = lower(maximize(BUILTINS[name]))
    for expr in _element_exprs(lowered):
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, sympy.Pow):
                assert node.exp.is_Integer or node.exp in (sympy.S.Half, -sympy.S.Half) or node.exp.is_Symbol
            elif isinstance(node, sympy.Number):
                parent_is_pow_or_sign = any(
                    isinstance(p, sympy.Pow) and p.exp == node or isinstance(p, sympy.Mul) and node == -1
                    for p in sympy.preorder_traversal(expr))
                assert parent_is_pow_or_sign, f"literal {node} in {expr}"


@pytest.mark.parametrize("name", BUILTINS)
def test_element_block_reads_only_locals_temporaries_and_kernel_scalars(name):
    lowered = lower(maximize(BUILTINS[name]))
    for phase in lowered.phases:
        allowed = {local for local, _ in phase.loads} | {t for t, _ in phase.element} | set(phase.kernel_scalars)
        for _, expr in (*phase.element, *phase.stores, *phase.sums):
            assert expr.free_symbols <= allowed


def test_adam_host_block_keeps_spec_names_and_hoists_bias_corrections():
    lowered = lower(maximize(BUILTINS["adam"]))
    names = [str(s) for s, _ in _host(lowered)]
    assert names[:4] == ["grad_sign", "bias_correction1", "bias_correction2", "step_size"]
    step_symbol = step
    for expr in _element_exprs(lowered):  # nothing that depends on the step is computed per element
        assert step_symbol not in expr.free_symbols
        assert not any(str(s).startswith("bias_correction") for s in expr.free_symbols)


def test_scalar_factors_of_products_and_sums_are_grouped():
    spec = Spec("grouped")
    lr, a, b = spec.hyperparameters(lr=0.1, a=2.0, b=3.0)
    spec.update(param, param - lr * a * grad / b + a * b)
    lowered = lower(validate(spec))
    (_, value), = lowered.update.stores
    # -lr*a/b and a*b each become one host value: two kernel scalars, one product and one sum per element.
    assert len(lowered.update.kernel_scalars) == 2
    assert sympy.count_ops(value) <= 3


def test_lone_reciprocal_gets_a_typed_numerator():
    spec = Spec("recip")
    (eps,) = spec.hyperparameters(eps=1e-8)
    spec.update(param, 1 / (grad + eps))
    lowered = lower(validate(spec))
    host = {str(s): e for s, e in _host(lowered)}
    (_, value), = lowered.update.stores
    numerators = [s for s in value.free_symbols if str(s) in host and host[str(s)] == 1]
    assert numerators, f"no typed numerator in {value}"


def test_dead_definitions_are_dropped():
    spec = Spec("dead")
    (lr,) = spec.hyperparameters(lr=0.1)
    spec.define("unused", lr**2 + step)
    spec.update(param, param - lr * grad)
    assert "unused" not in [str(s) for s, _ in _host(lower(validate(spec)))]


def test_lowering_is_deterministic():
    first = lower(maximize(BUILTINS["nadam"]))
    second = lower(maximize(BUILTINS["nadam"]))
    assert first == second
