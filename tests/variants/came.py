"""CAME: came-pytorch's CAME on float64 tensors, on 1-D, 2-D and 3-D tensors (factored over the last two dimensions)."""

import pytest

from ._references import TorchReference
from ._schema import Case, VariantTests
from .adafactor import SHAPES


class CamePytorch(TorchReference):
    """came_pytorch.CAME on one tensor. Its row states are shaped ``[..., rows]`` and its column states ``[..., cols]``
    (adamgen's ``[..., rows, 1]`` and ``[..., 1, cols]``); a tensor of one dimension keeps ``exp_avg_sq``, adamgen's
    column state, and no confidence states (adamgen's are kept but not read)."""

    def make(self, tensor, h):
        came = pytest.importorskip("came_pytorch")
        h.pop("maximize", None)  # TorchReference.step hands it -grad
        betas = (h.pop("beta1", 0.9), h.pop("beta2", 0.999), h.pop("beta3", 0.9999))
        eps = (h.pop("eps1", 1e-30), h.pop("eps2", 1e-16))
        return came.CAME([tensor], lr=h.pop("lr", 2e-4), betas=betas, eps=eps, **h)

    def states(self, state):
        s, tensor = self.optimizer_state(state), state["tensor"]
        found = {"exp_avg": s["exp_avg"].numpy()}
        if tensor.dim() > 1:
            for name in ("exp_avg_sq_row", "exp_avg_res_row"):
                found[name] = s[name].unsqueeze(-1).numpy()
            for name in ("exp_avg_sq_col", "exp_avg_res_col"):
                found[name] = s[name].unsqueeze(-2).numpy()
        else:
            found["exp_avg_sq_col"] = s["exp_avg_sq"].reshape(-1).numpy()
        return found


VARIANT = VariantTests("came", cases=(
    Case("came-defaults", CamePytorch, {}, shapes=SHAPES),
    Case("came-options", CamePytorch, dict(lr=2e-3, beta1=0.8, beta2=0.99, beta3=0.999, clip_threshold=0.5,
                                           weight_decay=0.05, maximize=True), schedule=True, shapes=SHAPES),
))
