"""D-Adaptation Adam: dadaptation's DAdaptAdam, one tensor per optimizer here; test_group_reductions.py runs it over a
list of tensors (a param group), where the estimate of d reads every tensor."""

import pytest

from ._references import TorchReference
from ._schema import Case, VariantTests


class DAdaptAdam(TorchReference):
    """dadaptation.DAdaptAdam on one tensor; its ``d`` and ``numerator_weighted`` live in the param group (with
    ``layer_scale``, which the constructor does not take), where adamgen keeps them as scalar states."""

    def make(self, tensor, h):
        dadaptation = pytest.importorskip("dadaptation")
        h.pop("maximize", None)  # TorchReference.step hands it -grad
        betas = (h.pop("beta1", 0.9), h.pop("beta2", 0.999))
        layer_scale = h.pop("layer_scale", 1.0)
        optimizer = dadaptation.DAdaptAdam([tensor], betas=betas, **h)
        optimizer.param_groups[0]["layer_scale"] = layer_scale
        return optimizer

    def states(self, state):
        s, group = self.optimizer_state(state), state["optimizer"].param_groups[0]
        return {"exp_avg": s["exp_avg"].numpy(), "exp_avg_sq": s["exp_avg_sq"].numpy(), "s": s["s"].numpy(),
                "d": group["d"], "numerator_weighted": group["numerator_weighted"]}


VARIANT = VariantTests("dadapt_adam", cases=(
    Case("dadapt_adam-defaults", DAdaptAdam, dict(d0=1e-3, weight_decay=0.01)),
    Case("dadapt_adam-options", DAdaptAdam, dict(d0=1e-3, weight_decay=0.05, decouple=True, use_bias_correction=True,
                                                 growth_rate=1.05, layer_scale=0.5, maximize=True), schedule=True),
))
