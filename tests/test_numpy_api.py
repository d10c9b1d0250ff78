"""The NumPy interface is the generated module itself: init/step per array, or one step over flat buffers of views."""

from __future__ import annotations

import numpy as np
import pytest

import adamgen

SHAPES = [(300, 200), (200,), (17, 3, 5), (1,), (0,), (4096, 8)]


def views_of(flat, shapes):
    sizes = [int(np.prod(shape)) for shape in shapes]
    return [part.reshape(shape) for part, shape in zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes)]


@pytest.mark.parametrize("name,options", [("adamw", {}), ("nadam", {}), ("adam", {"amsgrad": True}), ("radam", {})])
def test_one_step_over_flat_buffers_equals_a_step_per_array(name, options):
    module = adamgen.load(name, **options)
    rng = np.random.default_rng(0)
    total = sum(int(np.prod(shape)) for shape in SHAPES)
    start = rng.standard_normal(total).astype(np.float32)
    flat_param, flat_grad = start.copy(), np.zeros_like(start)
    params, grads = views_of(flat_param, SHAPES), views_of(flat_grad, SHAPES)
    flat_state = module.init(flat_param)
    separate = [p.copy() for p in views_of(start.copy(), SHAPES)]
    states = [module.init(p) for p in separate]
    for _ in range(8):
        for grad in grads:
            grad[...] = rng.standard_normal(grad.shape).astype(np.float32)
        module.step(flat_param, flat_grad, flat_state, lr=1e-2, weight_decay=0.01)
        for param, grad, state in zip(separate, grads, states):
            module.step(param, grad, state, lr=1e-2, weight_decay=0.01)
    assert flat_state["step"] == 8
    for param, expected, state, k in zip(params, separate, states, range(len(SHAPES))):
        np.testing.assert_array_equal(param, expected)
        for key in module.STATES:
            np.testing.assert_array_equal(views_of(flat_state[key], SHAPES)[k], state[key])
    assert not np.array_equal(flat_param, start)


def test_state_is_plain_numpy_and_resumable():
    """The state dict holds numpy arrays and Python numbers: copying it and stepping on gives the same result."""
    module = adamgen.load("nadam")
    rng = np.random.default_rng(1)
    param = rng.standard_normal(1000).astype(np.float64)
    state = module.init(param)
    grads = [rng.standard_normal(1000) for _ in range(6)]
    for grad in grads[:3]:
        module.step(param, grad, state)
    saved = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    saved_param = param.copy()
    assert isinstance(state["step"], int) and isinstance(state["mu_product"], float)
    for grad in grads[3:]:
        module.step(param, grad, state)
    for grad in grads[3:]:
        module.step(saved_param, grad, saved)
    np.testing.assert_array_equal(param, saved_param)
    assert saved["step"] == state["step"] == 6
