"""adamgen: a symbolic optimizer compiler.

Adam-family update rules written as SymPy expressions are compiled to fused Numba kernels for the CPU and for CUDA GPUs.

    import adamgen
    adam = adamgen.load("adamw")            # a generated module: init, step, metadata
    state = adam.init(param)
    adam.step(param, grad, state, lr=1e-3)
"""

__version__ = "0.1.0"

from .resources import mount_checkout_folders  # noqa: E402

mount_checkout_folders()  # a checkout on PYTHONPATH with no install: generated/ and templates/ as adamgen's packages

from .errors import AdamgenError, GenerateError, SpecError  # noqa: E402
from .loader import load  # noqa: E402
from .spec import Spec, Variant, validate  # noqa: E402

__all__ = ["AdamgenError", "GenerateError", "SpecError", "Spec", "Variant", "load", "validate", "__version__"]
