"""A float32 ``atan2`` for CPU kernels that vectorizes.

libm's ``atan2f`` is an opaque call that keeps LLVM from vectorizing a loop (measured 40x slower than this), so element
code calls ``_atan2``: in float32 kernels a branch-free polynomial within 3 ulp, in float64 kernels ``math.atan2``.
"""

from __future__ import annotations

import math

import numba
import numba.extending

# --- inlined into generated modules from here on ---


@numba.njit(inline="always", error_model="numpy", cache=True)
def _atan2f(y, x):
    """float32 atan2 within 3 ulp, branch-free so that loops calling it vectorize: t = the quotient of the smaller and
    the larger magnitude, or (small - large) / (small + large) above tan(pi/8) (one division either way), then Cephes'
    atanf polynomial, the octant and the signs (+-0, inf and nan as math.atan2)."""
    f32 = numba.float32
    zero, one = f32(0.0), f32(1.0)
    ax, ay = abs(x), abs(y)
    large, small = max(ax, ay), min(ax, ay)
    equal = ax == ay
    reduce = (small > f32(0.41421356237309503) * large) | equal
    scale = f32(0.25) if large > f32(1e38) else one  # keeps small + large finite; exact on normal numbers
    small, large = small * scale, large * scale
    t = ((small - large) if reduce else small) / ((small + large) if reduce else large)
    t = zero if equal else t
    z = t * t
    r = (((f32(8.05374449538e-2) * z - f32(1.38776856032e-1)) * z + f32(1.99777106478e-1)) * z
         - f32(3.33329491539e-1)) * z * t + t
    r = r + f32(0.7853981633974483) if reduce else r
    r = zero if large == zero else r
    r = f32(1.5707963267948966) - r if ay > ax else r
    r = f32(3.141592653589793) - r if math.copysign(one, x) < zero else r
    return x + y if (x != x) | (y != y) else math.copysign(r, y)


def _atan2(y, x):
    return math.atan2(y, x)


@numba.extending.overload(_atan2, inline="always")
def _atan2_typed(y, x):
    if isinstance(y, numba.types.Float) and y.bitwidth == 32:
        return lambda y, x: _atan2f(y, x)
    return lambda y, x: math.atan2(y, x)
