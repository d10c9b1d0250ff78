"""Adamax (Kingma & Ba, arXiv:1412.6980, section 7): torch.optim.Adamax is its twin."""

from ._schema import VS_TORCH, Case, TorchOptim, VariantTests

VARIANT = VariantTests("adamax", cases=(
    Case("adamax", TorchOptim("Adamax", {}, {"exp_avg": "exp_avg", "exp_inf": "exp_inf"}), {"weight_decay": 0.01},
         tolerance=VS_TORCH),
))
