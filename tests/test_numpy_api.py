"""The NumPy interface is the generated module itself: init/step per array, step_many over any list of arrays (one
kernel call per pass), or step on flat buffers of views."""

from __future__ import annotations

import numpy as np
import pytest

import adamgen

SHAPES = [(300, 200), (200,), (17, 3, 5), (1,), (0,), (4096, 8)]
VARIANTS = [("adamw", {}), ("nadam", {}), ("adam", {"amsgrad": True}), ("radam", {}), ("lamb", {}),
            ("adamw", {"cautious": True}), ("schedulefree_adamw", {})]


def views_of(flat, shapes):
    sizes = [int(np.prod(shape)) for shape in shapes]
    return [part.reshape(shape) for part, shape in zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes)]


def _close(module, actual, expected):
    """Bit for bit for elementwise variants. A reduction's per-tensor sums may round differently when step_many takes
    the parallel kernel for a tensor that step alone runs serially (several partial sums per chunk vs one): float32
    rounding of the sums, nothing more."""
    if module.ELEMENTWISE:
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name,options", VARIANTS)
def test_step_many_over_separate_arrays_equals_a_step_per_array(name, options):
    """Arrays anywhere in memory, each tensor with its own step count: a tensor that joins later keeps its own count
    and its own bias correction (and scalar states)."""
    module = adamgen.load(name, **options)
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    params, separate = [p.copy() for p in start], [p.copy() for p in start]
    states, single = module.init_many(params), [module.init(p) for p in separate]
    for step in range(6):
        grads = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
        active = slice(None) if step >= 2 else slice(1, None)  # the first tensor joins at the third step
        module.step_many(params[active], grads[active], states[active], lr=1e-2, weight_decay=0.01)
        for param, grad, state in zip(separate[active], grads[active], single[active]):
            module.step(param, grad, state, lr=1e-2, weight_decay=0.01)
    assert [s["step"] for s in states] == [4] + [6] * (len(SHAPES) - 1)
    for k in range(len(SHAPES)):
        _close(module, params[k], separate[k])
        for key in module.STATES:
            _close(module, states[k][key], single[k][key])
        for key in module.SCALAR_STATES:
            assert states[k][key] == pytest.approx(single[k][key], rel=1e-12)
        assert states[k]["step"] == single[k]["step"]
    assert not np.array_equal(params[0], start[0])


def test_one_step_over_flat_buffers_equals_a_step_per_array():
    """For an elementwise variant, step on flat buffers of views is one call over all of them, with one step count."""
    module = adamgen.load("adamw")
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
        module.step_many(separate, grads, states, lr=1e-2, weight_decay=0.01)
    assert flat_state["step"] == 8 and module.ELEMENTWISE
    for param, expected, state, k in zip(params, separate, states, range(len(SHAPES))):
        np.testing.assert_array_equal(param, expected)
        for key in module.STATES:
            np.testing.assert_array_equal(views_of(flat_state[key], SHAPES)[k], state[key])
    assert not np.array_equal(flat_param, start)


def test_step_many_with_float64_and_tensors_sharing_a_buffer():
    """Views of one buffer are separate tensors to step_many as long as no written array overlaps another."""
    module = adamgen.load("lamb")
    rng = np.random.default_rng(3)
    buffer = rng.standard_normal(1000)
    params = [buffer[:300].reshape(30, 10), buffer[300:301], buffer[400:1000]]
    expected = [p.copy() for p in params]
    states, single = module.init_many(params), [module.init(p) for p in expected]
    for _ in range(3):
        grads = [rng.standard_normal(p.shape) for p in params]
        module.step_many(params, grads, states)
        for p, g, s in zip(expected, grads, single):
            module.step(p, g, s)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-14, atol=1e-15)
    assert np.array_equal(buffer[301:400], np.random.default_rng(3).standard_normal(1000)[301:400])  # untouched


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
