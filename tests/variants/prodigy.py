"""Prodigy: prodigyopt's Prodigy, one tensor per optimizer here; test_group_reductions.py runs it over a list of
tensors (a param group), where the estimate of d reads every tensor."""

import numpy as np
import pytest

from ._references import TorchReference
from ._schema import Case, VariantTests


class ProdigyOpt(TorchReference):
    """prodigyopt.Prodigy on one tensor. Its ``s`` and ``p0`` are flat (``slice_p`` 1: every element), ``p0`` a 0-d
    zero for a parameter that is all zeros (the same values as adamgen's copy of it); its ``d``,
    ``d_max`` and ``d_numerator`` live in the param group, where adamgen keeps them as scalar states."""

    def make(self, tensor, h):
        prodigyopt = pytest.importorskip("prodigyopt")
        h.pop("maximize", None)  # TorchReference.step hands it -grad
        betas = (h.pop("beta1", 0.9), h.pop("beta2", 0.999))
        return prodigyopt.Prodigy([tensor], betas=betas, **h)

    def states(self, state):
        s, group = self.optimizer_state(state), state["optimizer"].param_groups[0]
        shape = state["tensor"].shape
        return {"exp_avg": s["exp_avg"].numpy(), "exp_avg_sq": s["exp_avg_sq"].numpy(),
                "s": s["s"].reshape(shape).numpy(),
                "p0": np.broadcast_to(s["p0"].numpy(), (state["tensor"].numel(),)).reshape(shape),
                "d": group["d"], "d_max": group["d_max"], "d_numerator": group["d_numerator"]}


# d grows from d0 by orders of magnitude over the run (the steps are ~d*lr): a larger d0 and the options that change the
# formulas (coupled decay, bias correction, safeguard warm-up, a growth limit)
VARIANT = VariantTests("prodigy", cases=(
    Case("prodigy-defaults", ProdigyOpt, dict(d0=1e-3, weight_decay=0.01)),
    Case("prodigy-options", ProdigyOpt, dict(d0=1e-3, weight_decay=0.05, decouple=False, use_bias_correction=True,
                                             safeguard_warmup=True, growth_rate=1.05, beta3=0.99, maximize=True),
         schedule=True),
))
