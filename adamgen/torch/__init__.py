"""``adamgen.torch``: ``torch.optim`` optimizers that run adamgen's generated kernels.

    import adamgen.torch
    optimizer = adamgen.torch.Optimizer(model.parameters(), variant="adamw", lr=1e-3, betas=(0.9, 0.999))
    optimizer = adamgen.torch.AdamW(model.parameters(), lr=1e-3)                 # the same, as a class
    Cls = adamgen.torch.optimizer_class("my_adamw.py", amsgrad=True)            # any variant, e.g. for ZeRO

Any generated module drives it: a built-in name, option flags (``amsgrad=True``), a path to a spec file, or a ``Spec``.
Param groups use torch's names (``lr``, ``betas``, ``eps``, ``weight_decay``, ``maximize``, ``amsgrad``,
``momentum_decay``, ``decoupled_weight_decay``, ...), so ``torch.optim.lr_scheduler`` works unchanged; the state layout
(``step`` as a float32 0-d tensor, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``exp_inf``, ``mu_product``) is
``torch.optim``'s, so checkpoints move between ``torch.optim.AdamW`` and ``adamgen.torch.AdamW`` both ways.

Parameters, gradients and state tensors stay where their owners put them: every step reads them afresh from the param
groups and ``optimizer.state`` and updates them in place, one kernel call per pass for all the tensors of a param group
that share a device and a dtype (an address table, as torch's fused optimizers use). CUDA tensors go to the CUDA
kernels, launched on torch's current stream.
"""

from .hyperparameters import HyperparameterError
from .optimizer import Adafactor, Adam, Adamax, AdamMini, AdamW, NAdam, Optimizer, RAdam, SophiaG, optimizer_class
from .state import StateDictError
from .tensors import UnsupportedTensorError

__all__ = ["Optimizer", "optimizer_class", "UnsupportedTensorError", "HyperparameterError", "StateDictError", "Adam",
           "AdamW", "Adamax", "Adafactor", "AdamMini", "NAdam", "RAdam", "SophiaG"]
