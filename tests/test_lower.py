"""Lowering guarantees: numbers and scalar-only subexpressions leave the element block; host code keeps spec names."""

import pytest
import sympy

from adamgen.lower import lower
from adamgen.spec import Spec, grad, param, step, validate
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


def _phase_plan(variant):
    """Per phase: the arrays read, the arrays written, and how many sums."""
    lowered = lower(maximize(variant))
    return [(tuple(str(a) for _, a in p.loads), tuple(str(a) for a, _ in p.stores), len(p.sums))
            for p in lowered.phases]


def _catalogue(name):
    import importlib

    from adamgen.variants import as_variant
    return as_variant(importlib.import_module(f"adamgen.variants.{name}").spec)


def test_lamb_reduces_then_updates_computing_the_moments_again():
    """Reduce passes only read; the update pass writes every array, computing the new moments from the old ones."""
    assert _phase_plan(_catalogue("lamb")) == [
        (("param", "grad", "exp_avg", "exp_avg_sq"), (), 2),
        (("param", "grad", "exp_avg", "exp_avg_sq"), ("exp_avg", "exp_avg_sq", "param"), 0),
    ]


def test_a_state_whose_old_value_two_phases_read_is_written_by_the_last():
    # MARS's correction reads prev_grad in both phases.
    (reads0, writes0, sums0), (reads1, writes1, _) = _phase_plan(_catalogue("mars"))
    assert reads0 == ("grad", "prev_grad") and writes0 == () and sums0 == 1
    assert "prev_grad" in reads1 and "prev_grad" in writes1


def test_a_reduction_of_a_reduction_gets_its_own_phase():
    from adamgen.transforms import cautious
    plan = _phase_plan(cautious(_catalogue("lamb")))  # the mask's mean, then the norm of the masked update
    assert [sums for _, _, sums in plan] == [2, 1, 0]


def test_dead_reductions_cost_no_pass():
    spec = Spec("dead_norm")
    (lr,) = spec.hyperparameters(lr=0.1)
    spec.norm("unused_norm", grad)
    spec.update(param, param - lr * grad)
    assert len(lower(validate(spec)).phases) == 1


def test_reduction_sums_are_typed_and_read_only_their_phase():
    lowered = lower(maximize(_catalogue("stableadamw")))
    reduce, update = lowered.phases
    host = {str(s): e for s, e in _host(lowered)}
    assert host[str(reduce.zero)] == 0 and reduce.zero in reduce.kernel_scalars
    # the update reads lr_t, known only after the sum: it is computed in the host block after the reduce phase
    assert "lr_t" in [str(s) for s, _ in lowered.host[1]]
    assert "lr_t" not in [str(s) for s, _ in lowered.host[0]]


def test_a_scalar_alias_of_a_number_is_not_a_flag():
    """A SymPy Symbol is also a Boolean: a new value that is just another number (param_new = lr) stays a number."""
    spec = Spec("alias")
    (lr,) = spec.hyperparameters(lr=0.1)
    spec.update(param, lr)
    lowered = lower(validate(spec))
    assert lowered.update.kernel_scalars == (sympy.Symbol("param_new", real=True),)
    assert not lowered.flags


def test_sums_that_only_scalar_states_read_leave_the_stores_to_the_update_pass():
    spec = Spec("tally")
    (lr,) = spec.hyperparameters(lr=0.1)
    total = spec.scalar_state("total", 0.0)
    spec.update(total, total + spec.sum("squares", grad**2))
    spec.update(param, param - lr * grad)
    assert _phase_plan(validate(spec)) == [(("grad",), (), 1), (("param", "grad"), ("param",), 0)]


def test_atan_is_computed_as_atan2_per_element():
    spec = Spec("arctan")
    (lr,) = spec.hyperparameters(lr=0.1)
    spec.update(param, param - lr * sympy.atan2(grad, step))  # SymPy: atan(grad/step)
    (_, value), = lower(validate(spec)).update.stores
    assert value.has(sympy.atan2) and not value.has(sympy.atan)


def test_max_and_min_are_not_simplified_at_each_rebuild():
    """Lowering's Max and Min skip SymPy's search for dominated arguments but print and sort as SymPy's."""
    spec = Spec("clipped")
    (lr,) = spec.hyperparameters(lr=0.1)
    spec.update(param, param - lr * sympy.Max(sympy.Min(grad, 1), -1))
    (_, value), = lower(validate(spec)).update.stores
    lattices = [n for n in sympy.preorder_traversal(value) if isinstance(n, (sympy.Max, sympy.Min))]
    assert [type(n).__name__ for n in lattices] == ["Max", "Min"]
    assert all(type(n) not in (sympy.Max, sympy.Min) for n in lattices)


def test_a_piecewise_inlined_into_a_comparison_leaves_no_ite():
    """Inlining a per-element Piecewise into a comparison makes SymPy build an ITE, which the element printer wrote with
    a literal; lowering rewrites it as And/Or, so the kernel gets typed scalars only."""
    from adamgen.generate import generate

    spec = Spec("gated", doc="A momentum gated by a per-element choice (a test spec).")
    (lr,) = spec.hyperparameters(lr=0.1)
    (exp_avg,) = spec.states("exp_avg")
    choice = spec.define("choice", sympy.Piecewise((1.5, exp_avg > 0), (sympy.Abs(exp_avg), True)))
    spec.update(exp_avg, sympy.Piecewise((2.0, (choice > 0.001) & (param <= 3)), (-1.0, True)) + grad)
    spec.update(param, param - lr * exp_avg)
    variant = validate(spec)
    lowered = lower(maximize(variant))
    assert not any(e.has(sympy.logic.boolalg.ITE) for e in _element_exprs(lowered))
    assert "_update" in generate(variant, "cpu")


@pytest.mark.parametrize("flag", [False, True])
def test_a_piecewise_on_a_flag_compared_after_inlining_keeps_both_branches(flag):
    """SymPy folds a comparison of a Piecewise into a Piecewise of conditions and rewrites that as ITE, dropping every
    branch after one whose condition is a bare symbol: ``sign(m_new)`` with ``m_new = Piecewise((m, flag), (...))``
    would read the sign of the old ``m`` whatever the flag (SophiaG's Hessian step did). Lowering builds such
    comparisons branch by branch: the float64 kernel agrees with the oracle, which evaluates the definitions one by
    one, for either value of the flag."""
    import numpy as np

    import adamgen
    from adamgen.oracle import Oracle
    from adamgen.spec import Piecewise, sign

    spec = Spec("flag_sign_sgd")
    lr = spec.hyperparameter("lr", 0.1)
    frozen = spec.hyperparameter("frozen", False)
    (momentum,) = spec.states("momentum")
    m = spec.update(momentum, Piecewise((momentum, frozen), (0.5 * momentum + grad, True)))
    spec.update(param, param - lr * sign(m))
    module, oracle = adamgen.load(spec), Oracle(spec)
    rng = np.random.default_rng(0)
    param_values = rng.standard_normal(64)
    ours, exact = param_values.copy(), param_values.copy()
    state, exact_state = module.init(ours), oracle.init(exact)
    for k in range(6):
        g = rng.standard_normal(64)
        module.step(ours, g, state, frozen=flag and k > 0)
        oracle.step(exact, g, exact_state, frozen=flag and k > 0)
    np.testing.assert_array_equal(ours, exact)
    np.testing.assert_array_equal(state["momentum"], exact_state["momentum"])


def test_a_state_made_from_the_parameter_that_the_rule_only_reads_is_never_written():
    """``spec.state(name, init=param)`` starts as a copy of the parameter (its own memory); a state whose update is
    itself (``spec.update(anchor, anchor)``) is read and never stored."""
    import numpy as np

    import adamgen

    spec = Spec("anchored_sgd", doc="SGD pulled back toward the starting point (a test spec).")
    lr, pull = spec.hyperparameters(lr=0.1, pull=0.5)
    anchor = spec.state("anchor", init=param)
    spec.update(anchor, anchor)
    spec.update(param, param - lr * grad - pull * lr * (param - anchor))
    lowered = lower(maximize(validate(spec)))
    assert [str(array) for array, _ in lowered.update.stores] == ["param"]
    assert "anchor" in [str(array) for _, array in lowered.update.loads]
    module = adamgen.load(spec)
    assert module.STATE_INIT == {"anchor": "param"}
    p = np.arange(4.0, dtype=np.float32)
    state = module.init(p)
    np.testing.assert_array_equal(state["anchor"], p)
    assert not np.shares_memory(state["anchor"], p) and state["anchor"].dtype == p.dtype
    for _ in range(3):
        module.step(p, np.ones_like(p), state)
    np.testing.assert_array_equal(state["anchor"], np.arange(4.0))
    assert np.all(p < np.arange(4.0))


def test_a_rule_that_changes_nothing_still_compiles_and_writes_only_the_parameter():
    """Every update the identity: the update pass still stores the parameter (a loop with a body), and no state."""
    import numpy as np

    import adamgen

    spec = Spec("still", doc="Changes nothing (a test spec).")
    (lr,) = spec.hyperparameters(lr=0.1)
    (momentum,) = spec.states("momentum")
    spec.update(momentum, momentum)
    spec.update(param, param)
    lowered = lower(maximize(validate(spec)))
    assert [str(array) for array, _ in lowered.update.stores] == ["param"]
    module = adamgen.load(spec)
    p = np.arange(3.0)
    state = module.init(p)
    module.step(p, np.ones(3), state)
    np.testing.assert_array_equal(p, np.arange(3.0))
