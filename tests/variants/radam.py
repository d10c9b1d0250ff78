"""RAdam (Liu et al., arXiv:1908.03265): torch.optim.RAdam is its twin, with coupled and with decoupled weight decay."""

from ._schema import ADAM_STATES, VS_TORCH, Case, TorchOptim, VariantTests

VARIANT = VariantTests("radam", cases=(
    Case("radam", TorchOptim("RAdam", {"decoupled_weight_decay": False}, ADAM_STATES), tolerance=VS_TORCH),
    Case("radamw", TorchOptim("RAdam", {"decoupled_weight_decay": True}, ADAM_STATES), {"weight_decay": 0.1},
         options={"decoupled_weight_decay": True}, tolerance=VS_TORCH),
))
