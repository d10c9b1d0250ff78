"""Adafactor: torch.optim.Adafactor (torch >= 2.5) on float64 tensors, on 1-D, 2-D and 3-D tensors (factored over the
last two dimensions) and a tensor of one element."""

import numpy as np
import pytest

from ._references import TorchReference
from ._schema import Case, VariantTests

# 1-D (a full second moment), empty, 2-D, 3-D (slices with their own row means), one large enough for the parallel
# kernels (its tiles cut rows into column pieces), and a 2-D one with a single row
SHAPES = ((1,), (0,), (5, 7), (3, 4, 6), (24,), (2, 33000), (1, 9))


class TorchAdafactor(TorchReference):
    """torch.optim.Adafactor on one tensor. Its ``eps1`` default (None) is the machine epsilon of the tensor's dtype,
    float64's here; adamgen's is float32's, so the reference gets that value. A tensor of one dimension keeps
    ``variance``, adamgen's column state (one value per element). An empty tensor is not stepped: the reference
    divides by its element count (ZeroDivisionError); adamgen leaves it as it is."""

    def make(self, tensor, h):
        torch = self.torch
        if not hasattr(torch.optim, "Adafactor"):
            pytest.skip("torch.optim.Adafactor needs torch >= 2.5")
        h.pop("maximize", None)  # TorchReference.step hands it -grad
        eps = (h.pop("eps1", float(np.finfo(np.float32).eps)), h.pop("eps2", 1e-3))
        return torch.optim.Adafactor([tensor], eps=eps, foreach=False, **h)

    def step(self, param, grad, state, **hyperparameters):
        if param.size:  # torch.optim.Adafactor divides by the element count: an empty tensor raises
            super().step(param, grad, state, **hyperparameters)
        else:
            state["step"] += 1

    def states(self, state):
        s, tensor = self.optimizer_state(state), state["tensor"]
        if not tensor.numel():
            return {}
        if tensor.dim() > 1:
            return {"row_var": s["row_var"].numpy(), "col_var": s["col_var"].numpy()}
        return {"col_var": s["variance"].reshape(-1).numpy()}


VARIANT = VariantTests("adafactor", cases=(
    Case("adafactor-defaults", TorchAdafactor, {}, shapes=SHAPES),
    Case("adafactor-options", TorchAdafactor, dict(lr=3e-2, beta2_decay=-0.6, eps2=1e-2, d=1.2, weight_decay=0.05,
                                                   maximize=True), schedule=True, shapes=SHAPES),
))
