"""The generated ``step`` refuses bad input with a TypeError or ValueError that names the problem, and changes nothing.

Every built-in module is tried with each kind of bad input after two good steps (so the state holds non-trivial values
that a partial write would disturb); afterwards the parameter, the gradient, every state entry and the step counter must
be exactly as before.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import adamgen
from adamgen.variants import builtin_variants

BUILTINS = builtin_variants()
MODULES = [pytest.param(name, options, id=variant.name) for name, options, variant in BUILTINS]
SHAPE = (6, 5)


def _good(module, dtype=np.float32, shape=SHAPE):
    """A parameter, a gradient and a state after two valid steps."""
    rng = np.random.default_rng(0)
    param = rng.standard_normal(shape).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    state = module.init(param)
    for _ in range(2):
        module.step(param, grad, state)
    return param, grad, state


def _replace_state(index, make):
    """A builder that replaces the module's state array number ``index`` by ``make(array, param)``."""
    def build(m):
        param, grad, state = _good(m)
        name = m.STATES[index]
        state[name] = make(state[name], param)
        return param, grad, state, {}
    return build


def _strided(array):
    """The same values as a non-contiguous view (every other column of a wider array)."""
    wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
    wide[..., ::2] = array
    return wide[..., ::2]


# name -> (build(module) -> (param, grad, state, hyperparameters), exception, text the message must contain, with
# {variant} and {state} standing for the module's name and its first state array).
BAD_INPUTS = {
    "param-float16": (lambda m: (lambda p: (p, p.copy(), m.init(p), {}))(np.ones(SHAPE, np.float16)),
                      TypeError, "param must be a float32 or float64 numpy array, got ndarray float16"),
    "param-int32": (lambda m: (lambda p: (p, p.copy(), m.init(p), {}))(np.ones(SHAPE, np.int32)),
                    TypeError, "param must be a float32 or float64 numpy array, got ndarray int32"),
    "param-list": (lambda m: ([1.0, 2.0], np.ones(2, np.float32), m.init(np.ones(2, np.float32)), {}),
                   TypeError, "param must be a float32 or float64 numpy array, got list"),
    "grad-float64-param-float32": (lambda m: (lambda p, g, s: (p, g.astype(np.float64), s, {}))(*_good(m)), TypeError,
                                   "grad must be a numpy array of param's dtype float32, got ndarray float64"),
    "grad-float32-param-float64": (lambda m: (lambda p, g, s: (p, g.astype(np.float32), s, {}))(*_good(m, np.float64)),
                                   TypeError,
                                   "grad must be a numpy array of param's dtype float64, got ndarray float32"),
    "grad-int": (lambda m: (lambda p, g, s: (p, g.astype(np.int64), s, {}))(*_good(m)),
                 TypeError, "grad must be a numpy array of param's dtype float32"),
    "grad-list": (lambda m: (lambda p, g, s: (p, g.tolist(), s, {}))(*_good(m)),
                  TypeError, "grad must be a numpy array"),
    "state-float64": (_replace_state(0, lambda a, p: a.astype(np.float64)),
                      TypeError, "{state} must be a numpy array of param's dtype float32, got ndarray float64"),
    "last-state-float16": (_replace_state(-1, lambda a, p: a.astype(np.float16)),
                           TypeError, "must be a numpy array of param's dtype float32, got ndarray float16"),
    "grad-wrong-size": (lambda m: (lambda p, g, s: (p, np.ones(p.size + 1, p.dtype), s, {}))(*_good(m)),
                        ValueError, "grad has shape (31,), param has shape (6, 5)"),
    "grad-same-size-other-shape": (lambda m: (lambda p, g, s: (p, np.ascontiguousarray(g.T), s, {}))(*_good(m)),
                                   ValueError, "grad has shape (5, 6), param has shape (6, 5)"),
    "state-wrong-shape": (_replace_state(0, lambda a, p: a.reshape(-1)),
                          ValueError, "{state} has shape (30,), param has shape (6, 5)"),
    "param-non-contiguous": (lambda m: (lambda p: (p, np.ones(SHAPE, np.float32), m.init(np.ones(SHAPE, np.float32)),
                                                   {}))(_strided(np.ones(SHAPE, np.float32))),
                             ValueError, "param must be C-contiguous"),
    "param-fortran-order": (lambda m: (lambda p: (p, np.ones(SHAPE, np.float32), m.init(np.ones(SHAPE, np.float32)),
                                                  {}))(np.asfortranarray(np.ones(SHAPE, np.float32))),
                            ValueError, "param must be C-contiguous"),
    "grad-non-contiguous": (lambda m: (lambda p, g, s: (p, _strided(g), s, {}))(*_good(m)),
                            ValueError, "grad must be C-contiguous"),
    "state-non-contiguous": (_replace_state(0, lambda a, p: _strided(a)),
                             ValueError, "{state} must be C-contiguous"),
    "param-read-only": (lambda m: (lambda p, g, s: (p.setflags(write=False) or p, g, s, {}))(*_good(m)),
                        ValueError, "param must be C-contiguous and writeable"),
    "state-read-only": (_replace_state(0, lambda a, p: a.setflags(write=False) or a),
                        ValueError, "state {state} must be writeable"),
    "state-is-param": (_replace_state(0, lambda a, p: p),
                       ValueError, "state {state} overlaps param in memory"),
    "unknown-hyperparameter": (lambda m: (*_good(m), {"learning_rate": 1e-3}),
                               TypeError, "unexpected keyword argument 'learning_rate'"),
    # Hyperparameters are checked before any pass runs: reduce phases store state, so a late failure would half-update.
    "hyperparameter-not-a-number": (lambda m: (*_good(m), {"lr": "0.001"}), TypeError,
                                    "hyperparameter lr must be a number, got '0.001'"),
}


def _snapshot(param, grad, state):
    return copy.deepcopy((param, grad, state))


def _assert_unchanged(before, after):
    (param0, grad0, state0), (param, grad, state) = before, after
    assert type(param) is type(param0) and np.array_equal(np.asarray(param), np.asarray(param0))
    assert type(grad) is type(grad0) and np.array_equal(np.asarray(grad), np.asarray(grad0))
    assert list(state) == list(state0), "state entries were added or removed"
    for key, value in state0.items():
        if isinstance(value, np.ndarray):
            assert state[key].dtype == value.dtype and np.array_equal(state[key], value), f"state[{key!r}] changed"
        else:
            assert state[key] == value, f"state[{key!r}] changed"


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
@pytest.mark.parametrize("name, options", MODULES)
def test_bad_input_is_refused_and_changes_nothing(name, options, bad):
    module = adamgen.load(name, **options)
    build, exception, text = BAD_INPUTS[bad]
    param, grad, state, hyperparameters = build(module)
    before = _snapshot(param, grad, state)
    with pytest.raises(exception) as error:
        module.step(param, grad, state, **hyperparameters)
    assert type(error.value) in (TypeError, ValueError)
    message = str(error.value)
    expected = text.format(variant=module.VARIANT, state=module.STATES[0])
    assert expected in message, f"{message!r} does not say {expected!r}"
    if bad != "unknown-hyperparameter":
        assert message.startswith(f"{module.VARIANT}.step: "), message
    _assert_unchanged(before, (param, grad, state))


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
    """The checks do not refuse what they should accept: float32 and float64, 0-d, empty and 2-D arrays."""
    module = adamgen.load(name, **options)
    for dtype in (np.float32, np.float64):
        for shape in [(), (0,), (1,), SHAPE]:
            param = np.full(shape, 0.5, dtype)
            state = module.init(param)
            module.step(param, np.full(shape, 0.25, dtype), state)
            assert state["step"] == 1 and param.dtype == dtype and param.shape == shape


def test_aliased_state_arrays_are_refused():
    module = adamgen.load("adam")
    param, grad, state = _good(module)
    state["exp_avg_sq"] = state["exp_avg"]
    with pytest.raises(ValueError, match="state exp_avg_sq overlaps exp_avg in memory"):
        module.step(param, grad, state)
