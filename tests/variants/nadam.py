"""NAdam (Dozat 2016): torch.optim.NAdam is its twin, with coupled and with decoupled weight decay."""

import numpy as np

from ._schema import ADAM_STATES, Case, Tolerance, TorchOptim, VariantTests

# torch keeps the running product `mu_product` as a float32 0-d tensor, even for float64 parameters (its
# `_get_scalar_dtype()` follows the default dtype), while adamgen keeps it as a float64 host scalar. Its rounding
# reaches the update coefficients `lr*(1-mu)/(1-mu_product)` through the cancellation `1 - mu_product`, so parity with
# torch's NAdam is float32-limited in both dtypes. Measured: ~7e-6 absolute with float32 parameters (14 % of the
# tolerance), ~7e-11 absolute and ~2e-8 relative with float64 parameters (7 %).
NADAM_VS_TORCH = {"float32": Tolerance(rtol=1.2e-5, atol=2e-5), "float64": Tolerance(rtol=1e-7, atol=1e-9)}
# torch's float32 mu_product is rounded twice per step (the float64 factor mu cast to float32, then the product): over
# 200 steps at most (1 + 2**-24)**400 - 1 ~ 2.4e-5 relative. The product decays geometrically (mu ~ 0.45): within ~110
# steps it falls below float32's smallest normal number, where torch's value loses its relative precision and then
# underflows to 0 while adamgen's float64 keeps it; that is the absolute slack.
MU_PRODUCT_VS_TORCH = Tolerance(rtol=2.5e-5, atol=float(np.finfo(np.float32).tiny))


def twin(decoupled_weight_decay: bool) -> TorchOptim:
    return TorchOptim("NAdam", {"decoupled_weight_decay": decoupled_weight_decay}, ADAM_STATES,
                      scalar_states={"mu_product": "mu_product"}, scalar_tolerance=MU_PRODUCT_VS_TORCH)


VARIANT = VariantTests("nadam", cases=(
    Case("nadam", twin(False), {"weight_decay": 0.01}, tolerance=NADAM_VS_TORCH),
    Case("nadamw", twin(True), {"weight_decay": 0.1}, options={"decoupled_weight_decay": True},
         tolerance=NADAM_VS_TORCH),
))
