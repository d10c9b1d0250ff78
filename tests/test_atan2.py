"""The CPU modules' float32 ``atan2`` (a vectorizable polynomial, see ``CpuElementPrinter``) against float64
``numpy.arctan2``: within 3 ulp everywhere (measured at most 2.8, near atan2 = 0.41, where the reduction subtracts
from pi/4), and ``math.atan2``'s value on every signed zero, infinity and nan; the float64 kernels call ``math.atan2``
itself."""

import math

import numba
import numpy as np
import pytest

import adamgen

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-30, 3e38, -3e38, 0.41421357],
                   np.float32)


@pytest.fixture(scope="module")
def atan2():
    module = adamgen.load("adam_atan2")

    @numba.njit(error_model="numpy")  # as the kernels: x/0 is inf or nan, not an exception
    def run(y, x, out):
        for i in range(y.size):
            out[i] = module._atan2(y[i], x[i])

    def call(y, x):
        out = np.empty_like(y)
        run(y, x, out)
        return out
    return call


def test_float32_within_3_ulp(atan2):
    rng = np.random.default_rng(0)
    n = 1 << 18
    y = (rng.standard_normal(n) * 10.0 ** rng.uniform(-20, 20, n)).astype(np.float32)
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-20, 20, n)).astype(np.float32)
    y[: n // 4] = x[: n // 4] * rng.uniform(0.3, 3.0, n // 4).astype(np.float32)  # quotients near the octant edges
    y[-1000:], x[-1000:] = (rng.uniform(1e38, 3.4e38, (2, 1000)) * [[1], [-1]]).astype(np.float32)  # |y| + |x| > max
    exact = np.arctan2(y.astype(np.float64), x.astype(np.float64))
    ours = atan2(y, x)
    assert ours.dtype == np.float32
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    error = np.abs(ours - exact) / ulp
    assert error.max() <= 3.0, (error.max(), y[error.argmax()], x[error.argmax()])


def test_float32_special_values_as_math_atan2(atan2):
    y, x = (a.ravel() for a in np.meshgrid(SPECIAL, SPECIAL))
    ours = atan2(y, x)
    for yi, xi, value in zip(y, x, ours):
        expected = np.float32(math.atan2(float(yi), float(xi)))
        if math.isnan(expected):
            assert math.isnan(value), (yi, xi, value)
        else:
            assert abs(float(value) - float(expected)) <= 2 * np.spacing(abs(expected)), (yi, xi, value, expected)
            assert math.copysign(1, value) == math.copysign(1, expected), (yi, xi, value, expected)


def test_float64_is_math_atan2(atan2):
    rng = np.random.default_rng(1)
    y, x = rng.standard_normal(1000), rng.standard_normal(1000)
    assert np.array_equal(atan2(y, x), [math.atan2(a, b) for a, b in zip(y, x)])
