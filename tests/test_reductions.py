"""Per-tensor reductions (sums, means and norms over one tensor) computed to float64 accuracy on float32 tensors.

The variants with reductions (LAMB, StableAdamW, MARS) and the cautious forms are held against their references and
the float64 oracle in test_catalogue.py, from their files in tests/variants/."""

import pytest


def _reduction_probe():
    """A spec that keeps the sum, mean and norm of the gradient as scalar states, so a test can read them."""
    from adamgen.spec import Spec, grad, param

    spec = Spec("reduction_probe")
    (lr,) = spec.hyperparameters(lr=1e-3)
    seen = [spec.scalar_state(name, init=0.0) for name in ("seen_sum", "seen_mean", "seen_norm")]
    values = spec.sum("total", grad), spec.mean("average", grad), spec.norm("size", grad)
    for state, value in zip(seen, values):
        spec.update(state, value)
    spec.update(param, param - lr * values[1] * grad)
    return spec


@pytest.mark.parametrize("size", [0, 1, 10**7])
def test_reductions_are_float64_accurate_on_float32_tensors(size, cache):
    """Sums over 0, 1 and 10^7 float32 elements: blocks summed in float32, block sums in float64. A plain float32
    running sum of 10^7 values in [0, 1) is off by percent; this must agree with a float64 sum to ~1e-7."""
    import numpy as np

    import adamgen

    module = adamgen.load(_reduction_probe())
    grad = np.random.default_rng(size).random(size, dtype=np.float32)
    param = np.zeros(size, np.float32)
    state = module.init(param)
    module.step(param, grad, state)
    exact = grad.astype(np.float64)
    expected = {"seen_sum": exact.sum(), "seen_mean": exact.sum() / max(size, 1),
                "seen_norm": np.sqrt((exact * exact).sum())}
    for name, value in expected.items():
        assert abs(state[name] - value) <= 1e-7 * abs(value), (name, state[name], value)
    if size:
        np.testing.assert_allclose(param, -1e-3 * expected["seen_mean"] * grad, rtol=1e-6)
