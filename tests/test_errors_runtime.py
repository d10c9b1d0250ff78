"""The generated ``step`` and ``step_many`` refuse bad input with a TypeError or ValueError that names the problem, and
change nothing.

Every built-in module is tried with each kind of bad input after two good steps (so the state holds non-trivial values
that a partial write would disturb): through ``step`` on one tensor, and through ``step_many`` with the bad tensor
third among four good ones (so a check that stopped early, or wrote the good tensors before checking the bad one,
would show). Afterwards every array, every state entry and every step counter must be exactly as before.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import adamgen
from adamgen.variants import builtin_variants

BUILTINS = builtin_variants()
MODULES = [pytest.param(name, options, id=variant.name) for name, options, variant in BUILTINS]
# The checks are the same inlined runtime code in every module; these differ in what it checks: three state arrays
# (adamw_amsgrad), scalar states (nadam), two reduce phases (clamb).
REPRESENTATIVE = {"adamw_amsgrad", "nadam", "clamb"}
SOME = [module for module in MODULES if module.id in REPRESENTATIVE]
SHAPE = (6, 5)
SHAPES = [(7,), (3, 4), SHAPE, (9,)]  # step_many's tensors; the bad one is number BAD
BAD = 2


def _good(module, dtype=np.float32, shape=SHAPE, seed=0):
    """A parameter, a gradient and a state after two valid steps."""
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(shape).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    state = module.init(param)
    for _ in range(2):
        module.step(param, grad, state)
    return param, grad, state


def _strided(array):
    """The same values as a non-contiguous view (every other column of a wider array)."""
    wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
    wide[..., ::2] = array
    return wide[..., ::2]


def _state(index, make):
    """A change that replaces the module's state array number ``index`` by ``make(array, param)``."""
    def change(m, p, g, s):
        s[m.STATES[index]] = make(s[m.STATES[index]], p)
        return p, g, s
    return change


def _overlapping_grad(m, p, g, s):
    """A gradient that shares its second half with the first half of the parameter's memory."""
    wide = np.zeros(p.size + p.size // 2, p.dtype)
    wide[:p.size] = p.ravel()
    s = copy.deepcopy(s)
    return wide[:p.size].reshape(p.shape), wide[p.size // 2:p.size // 2 + p.size].reshape(p.shape), s


def _overlapping_state(m, p, g, s):
    """A state array that starts in the middle of the parameter's memory."""
    wide = np.zeros(2 * p.size, p.dtype)
    wide[:p.size] = p.ravel()
    s[m.STATES[-1]] = wide[p.size // 2:p.size // 2 + p.size].reshape(p.shape)
    return wide[:p.size].reshape(p.shape), g, s


# name -> (change(module, param, grad, state) -> (param, grad, state), exception, text the message must contain;
# {array} stands for the bad array's name (param, grad or a state entry), {state} for the state dict's name)
BAD_INPUTS = {
    "param-int8": (lambda m, p, g, s: (p.astype(np.int8), g.astype(np.int8), s), TypeError,
                   "{param} must be a numpy array of float64, float32, float16 or bfloat16 (int16 bits), got ndarray "
                   "int8"),
    "param-int32": (lambda m, p, g, s: (p.astype(np.int32), g, s), TypeError,
                    "{param} must be a numpy array of float64, float32, float16 or bfloat16 (int16 bits), got ndarray "
                    "int32"),
    "param-list": (lambda m, p, g, s: (p.tolist(), g, s), TypeError, "{param} must be a numpy array of float64, "
                   "float32, float16 or bfloat16 (int16 bits), got list"),
    "grad-float64": (lambda m, p, g, s: (p, g.astype(np.float64), s), TypeError, "{grad} is float64, {param} is float32"),
    "grad-bfloat16": (lambda m, p, g, s: (p, g.view(np.int16)[..., ::2].copy(), s), TypeError,
                      "{grad} is bfloat16, {param} is float32"),
    "grad-int": (lambda m, p, g, s: (p, g.astype(np.int64), s), TypeError, "{grad} must be a numpy array of float64, "
                 "float32, float16 or bfloat16 (int16 bits), got ndarray int64"),
    "grad-list": (lambda m, p, g, s: (p, g.tolist(), s), TypeError, "{grad} must be a numpy array of float64, "
                  "float32, float16 or bfloat16 (int16 bits), got list"),
    "grad-none": (lambda m, p, g, s: (p, None, s), TypeError, "{grad} must be a numpy array of float64, float32, "
                  "float16 or bfloat16 (int16 bits), got NoneType"),
    "state-float64": (_state(0, lambda a, p: a.astype(np.float64)), TypeError,
                      "{state}['{first}'] is float64; with a float32 parameter, states are float32, float16 "
                      "or bfloat16"),
    "last-state-uint8": (_state(-1, lambda a, p: a.astype(np.uint8)), TypeError, "got ndarray uint8"),
    "grad-wrong-size": (lambda m, p, g, s: (p, np.ones(p.size + 1, p.dtype), s), ValueError,
                        "{grad} has shape (31,), param has shape (6, 5)"),
    "grad-same-size-other-shape": (lambda m, p, g, s: (p, np.ascontiguousarray(g.T), s), ValueError,
                                   "{grad} has shape (5, 6), param has shape (6, 5)"),
    "state-wrong-shape": (_state(0, lambda a, p: a.reshape(-1)), ValueError,
                          "{state}['{first}'] has shape (30,), param has shape (6, 5)"),
    "state-broadcastable": (_state(0, lambda a, p: a[:1].copy()), ValueError,
                            "{state}['{first}'] has shape (1, 5), param has shape (6, 5)"),
    "param-non-contiguous": (lambda m, p, g, s: (_strided(p), g, s), ValueError, "{param} must be C-contiguous"),
    "param-fortran-order": (lambda m, p, g, s: (np.asfortranarray(p), g, s), ValueError,
                            "{param} must be C-contiguous"),
    "grad-non-contiguous": (lambda m, p, g, s: (p, _strided(g), s), ValueError, "{grad} must be C-contiguous"),
    "state-non-contiguous": (_state(0, lambda a, p: _strided(a)), ValueError,
                             "{state}['{first}'] must be C-contiguous"),
    "param-read-only": (lambda m, p, g, s: (p.setflags(write=False) or p, g, s), ValueError, "{param} is read-only"),
    "state-read-only": (_state(0, lambda a, p: a.setflags(write=False) or a), ValueError,
                        "{state}['{first}'] is read-only"),
    "state-is-param": (_state(0, lambda a, p: p), ValueError, "{state}['{first}'] overlaps {param} in memory"),
    "states-alias": (_state(-1, lambda a, p: None), ValueError, "overlaps"),  # replaced below: last state is the first
    "state-overlaps-param": (_overlapping_state, ValueError, "overlaps {param} in memory"),
    "grad-overlaps-param": (_overlapping_grad, ValueError, "{grad} overlaps {param} in memory"),
    "state-not-a-dict": (lambda m, p, g, s: (p, g, list(s.items())), TypeError,
                         "{state} must be the dict that init returns, got list"),
    "step-negative": (lambda m, p, g, s: (p, g, {**s, "step": -1}), TypeError,
                      "{state}['step'] must be a non-negative int"),
    "step-float": (lambda m, p, g, s: (p, g, {**s, "step": 2.5}), TypeError, "{state}['step'] must be a non-negative"),
}


def _aliased_states(m, p, g, s):
    if len(m.STATES) < 2:
        return p, g, {**s, m.STATES[0]: p}
    return p, g, {**s, m.STATES[-1]: s[m.STATES[0]]}


BAD_INPUTS["states-alias"] = (_aliased_states, ValueError, "overlaps")

# Bad hyperparameters: checked before any pass runs (reduce phases store state, so a late failure would half-update).
BAD_HYPERPARAMETERS = {
    "unknown": ({"learning_rate": 1e-3}, TypeError, "unknown hyperparameter(s) learning_rate; {variant} takes lr"),
    "betas": ({"betas": (0.9, 0.99)}, TypeError, "betas are given one by one as"),
    "string": ({"lr": "0.001"}, TypeError, "hyperparameter lr must be a number, got '0.001'"),
    "array": ({"lr": np.ones(2)}, TypeError, "hyperparameter lr must be a single number"),
    "flag": ({"maximize": "yes"}, TypeError, "hyperparameter maximize must be True or False"),
}


def _snapshot(*values):
    return copy.deepcopy(values)


def _assert_unchanged(before, after):
    for old, new in zip(before, after):
        if isinstance(old, np.ndarray):
            assert type(new) is np.ndarray and new.dtype == old.dtype and np.array_equal(new, old, equal_nan=True)
        elif isinstance(old, dict):
            assert list(new) == list(old), "state entries were added or removed"
            _assert_unchanged(list(old.values()), list(new.values()))
        elif isinstance(old, (list, tuple)):
            assert type(new) is type(old) and len(new) == len(old)
            _assert_unchanged(old, new)
        else:
            assert new == old


def _names(module, many):
    k = f"[{BAD}]" if many else ""
    return dict(param=f"params{k}" if many else "param", grad=f"grads{k}" if many else "grad",
                state=f"states{k}" if many else "state", first=module.STATES[0], variant=module.VARIANT)


def _check(module, call, text, many, arrays, exception):
    before = _snapshot(*arrays)
    with pytest.raises(exception) as error:
        call()
    assert type(error.value) in (TypeError, ValueError)
    message = str(error.value)
    expected = text.format(**_names(module, many))
    assert expected in message, f"{message!r} does not say {expected!r}"
    assert message.startswith(f"{module.VARIANT}.{'step_many' if many else 'step'}: "), message
    _assert_unchanged(before, arrays)


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
@pytest.mark.parametrize("name, options", SOME)
def test_bad_input_to_step_is_refused_and_changes_nothing(name, options, bad):
    module = adamgen.load(name, **options)
    change, exception, text = BAD_INPUTS[bad]
    param, grad, state = change(module, *_good(module))
    _check(module, lambda: module.step(param, grad, state), text, False, [param, grad, state], exception)


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
@pytest.mark.parametrize("name, options", SOME)
def test_bad_input_to_step_many_is_refused_and_changes_nothing(name, options, bad):
    module = adamgen.load(name, **options)
    change, exception, text = BAD_INPUTS[bad]
    tensors = [_good(module, shape=shape, seed=k) for k, shape in enumerate(SHAPES)]
    tensors[BAD] = change(module, *tensors[BAD])
    params, grads, states = (list(column) for column in zip(*tensors))
    _check(module, lambda: module.step_many(params, grads, states), text, True, [params, grads, states], exception)


@pytest.mark.parametrize("bad", list(BAD_HYPERPARAMETERS))
@pytest.mark.parametrize("name, options", SOME)
def test_bad_hyperparameters_are_refused_and_change_nothing(name, options, bad):
    module = adamgen.load(name, **options)
    hyperparameters, exception, text = BAD_HYPERPARAMETERS[bad]
    param, grad, state = _good(module)
    _check(module, lambda: module.step(param, grad, state, **hyperparameters), text, False, [param, grad, state],
           exception)
    params, grads, states = (list(column) for column in zip(*[_good(module, shape=s) for s in SHAPES]))
    _check(module, lambda: module.step_many(params, grads, states, **hyperparameters), text, True,
           [params, grads, states], exception)


def test_step_many_refuses_a_tensor_listed_twice_and_mismatched_lists():
    module = adamgen.load("adamw")
    param, grad, state = _good(module)
    other = _good(module, seed=1)
    before = _snapshot(param, grad, state)
    with pytest.raises(ValueError, match=r"adamw\.step_many: params\[1\] overlaps params\[0\] in memory"):
        module.step_many([param, param], [grad, grad], [state, copy.deepcopy(state)])
    with pytest.raises(ValueError, match=r"adamw\.step_many: 2 params, 1 grads and 2 states"):
        module.step_many([param, other[0]], [grad], [state, other[2]])
    _assert_unchanged(before, (param, grad, state))
    module.step_many([], [], [])  # nothing to do is not an error


@pytest.mark.parametrize("name, options", MODULES)
def test_missing_state_entry_is_named_and_changes_nothing(name, options):
    module = adamgen.load(name, **options)
    for key in ("step", *module.STATES, *module.SCALAR_STATES):
        param, grad, state = _good(module)
        del state[key]
        before = _snapshot(param, grad, state)
        with pytest.raises(ValueError, match=rf"^{module.VARIANT}\.step: state lacks {key}; create it with "):
            module.step(param, grad, state)
        _assert_unchanged(before, (param, grad, state))


@pytest.mark.parametrize("name, options", MODULES)
def test_valid_inputs_are_accepted(name, options):
    """The checks do not refuse what they should accept: float32 and float64, 0-d, empty and 2-D arrays, gradients
    that are read-only or shared between tensors (they are only read)."""
    module = adamgen.load(name, **options)
    for dtype in (np.float32, np.float64):
        for shape in [(), (0,), (1,), SHAPE]:
            param = np.full(shape, 0.5, dtype)
            state = module.init(param)
            grad = np.full(shape, 0.25, dtype)
            grad.setflags(write=False)
            module.step(param, grad, state)
            assert state["step"] == 1 and param.dtype == dtype and param.shape == shape
        params = [np.full(SHAPE, 0.5, dtype) for _ in range(3)]
        shared = np.full(SHAPE, 0.25, dtype)
        states = module.init_many(params)
        module.step_many(params, [shared] * 3, states)
        assert [s["step"] for s in states] == [1, 1, 1]
