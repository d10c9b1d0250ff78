"""Adam (Kingma & Ba, arXiv:1412.6980): torch.optim.Adam is its twin, with and without amsgrad."""

from ._schema import ADAM_STATES, AMSGRAD_STATES, VS_TORCH, Case, TorchOptim, VariantTests

VARIANT = VariantTests("adam", cases=(
    Case("adam", TorchOptim("Adam", {"amsgrad": False}, ADAM_STATES), {"weight_decay": 0.1}, tolerance=VS_TORCH),
    Case("adam_amsgrad", TorchOptim("Adam", {"amsgrad": True}, AMSGRAD_STATES), options={"amsgrad": True},
         tolerance=VS_TORCH),
))
