"""torch.optim's state layout in checkpoints: what ``state_dict()`` hands out, and the checks a loaded state must pass.

Per parameter, the state is a dict: ``step`` (a float32 0-d tensor), one tensor per state array of the variant's
kernel, shaped like the parameter (``exp_avg``, ``exp_avg_sq``, ...), and one 0-d tensor per scalar state
(``mu_product``). ``optimizer.state`` may also hold entries that are not a parameter's (a state-dict hook adding one, as
torch's tests do); they pass through as they are.
"""

from __future__ import annotations

import math
import numbers

import torch

from ..errors import AdamgenError
from .tensors import blocks_of, check_placed_like, state_dtype_of


class StateDictError(AdamgenError, ValueError):
    """A checkpoint that does not fit the optimizer: a state tensor shaped unlike its parameter, a missing state, or a
    value of the wrong kind. Raised by ``load_state_dict`` before anything of the optimizer changes."""


def check_loaded(state, param_groups, module_of):
    """Check the state that torch's ``load_state_dict`` built from a checkpoint (keyed by parameter, its tensors already
    cast to each parameter's device and dtype) against the loaded param groups, before it replaces the optimizer's.

    A parameter's state is empty (no step taken yet) or holds ``step``, every state array and every scalar state of
    the kernel that will step its group (``module_of(group)``, whose ``STATES`` and ``SCALAR_STATES`` name them); state
    arrays are tensors shaped exactly like the parameter (torch.optim refuses other shapes at its next step, or
    broadcasts them), DTensors placed like their DTensor parameter (torch.distributed.checkpoint loads them so) and
    plain tensors for a plain one; ``step`` is a whole number and scalar states are numbers (a Python number or a
    1-element tensor). Keys the kernel does not use are kept. Numbers saved for ``step`` and scalar states become 0-d
    tensors, as torch.optim makes them (old checkpoints saved ``step`` as a number)."""
    converted = []
    for index, group in enumerate(param_groups):
        module = None
        for k, param in enumerate(group["params"]):
            entry = dict.get(state, param)
            if entry is None:
                continue
            where = f"load_state_dict: the state of parameter {k} of param group {index}"
            if not isinstance(entry, dict):
                raise StateDictError(f"{where} is a {type(entry).__name__}, not a dict")
            if not entry:
                continue
            module = module or module_of(group)
            arrays, scalars = tuple(module.STATES), tuple(module.SCALAR_STATES)
            vectors = {**{name: module._row_shape for name in getattr(module, "ROW_STATES", ())},
                       **{name: module._col_shape for name in getattr(module, "COL_STATES", ())}}
            scalars += tuple(vectors)
            missing = [name for name in ("step", *arrays, *scalars) if name not in entry]
            if missing:
                raise StateDictError(f"{where} has no {', '.join(missing)}; the {module.VARIANT} kernel keeps "
                                     f"{', '.join(('step', *arrays, *scalars))}")
            converted.append((entry, "step", _number(entry["step"], f"{where}: step", whole=True), torch.float32))
            block_size = group.get("block_size")
            blocks = 1 if block_size is None else blocks_of(param.numel(), block_size)
            for name in scalars:
                if name in vectors:  # a row or column state: float64 values, one per row (column)
                    shape = vectors[name](tuple(param.shape))
                    value = entry[name]
                    if not isinstance(value, torch.Tensor) or value.is_complex() \
                            or value.numel() != int(torch.Size(shape).numel()):
                        raise StateDictError(f"{where}: {name} must be a real tensor of shape {shape}, got "
                                             f"{tuple(value.shape) if isinstance(value, torch.Tensor) else value!r}")
                    continue
                if blocks > 1:  # one value per block of the param group's block_size
                    _blocks(entry[name], blocks, f"{where}: {name}")
                    continue
                converted.append((entry, name, _number(entry[name], f"{where}: {name}"), torch.float64))
            for name in arrays:
                value = entry[name]
                if not isinstance(value, torch.Tensor):
                    raise StateDictError(f"{where}: {name} is a {type(value).__name__}, not a tensor")
                if value.shape != param.shape:
                    raise StateDictError(f"{where}: {name} has shape {tuple(value.shape)}, its parameter "
                                         f"{tuple(param.shape)}")
                if value.is_complex():
                    raise StateDictError(f"{where}: {name} is complex ({value.dtype})")
                check_placed_like(param, value, where, name, StateDictError)
    for entry, name, number, dtype in converted:  # every entry passed: now turn the saved numbers into tensors
        if number is not None:
            entry[name] = torch.tensor(number, dtype=dtype)


def keep_state_dtypes(state, param_groups, saved, module_of):
    """torch's ``load_state_dict`` has cast every state tensor to its parameter's dtype (by value: an int16 remainder
    too); where a param group keeps its states in another dtype (``state_dtype``, or master weights' float32 states:
    ``state_dtype_of``; a remainder int16), take the tensor from the checkpoint ``saved`` (the state_dict given to
    ``load_state_dict``, its parameters in the loaded groups' order) cast to that dtype instead, so that a float32
    moment does not pass through bfloat16 on the way, and a remainder keeps its bits. Scalar states saved as tensors
    come back float64, as the kernels keep them (torch would have cast them to the parameter's dtype); row and column
    states float64 on the CPU."""
    for group, saved_group in zip(param_groups, saved["param_groups"]):
        module = None
        for param, key in zip(group["params"], saved_group["params"]):
            entry, original = dict.get(state, param), saved["state"].get(key)
            if not entry or not isinstance(original, dict):
                continue
            module = module or module_of(group)
            wanted = state_dtype_of(param, module, group.get("state_dtype"))
            for name in module.STATES:
                value, dtype = original.get(name), torch.int16 if name in module.REMAINDERS else wanted
                if isinstance(value, torch.Tensor) and entry[name].dtype != dtype:
                    entry[name] = value.to(device=entry[name].device, dtype=dtype)
            for name in module.SCALAR_STATES:
                value = original.get(name)
                if isinstance(value, torch.Tensor) and isinstance(entry[name], torch.Tensor) \
                        and entry[name].dtype != torch.float64 and value.is_floating_point():
                    entry[name] = value.to(device=entry[name].device, dtype=torch.float64)
            for name in (*getattr(module, "ROW_STATES", ()), *getattr(module, "COL_STATES", ())):
                value = original.get(name)  # kept as float64 CPU tensors (torch moved and cast them like the param)
                if isinstance(value, torch.Tensor):
                    entry[name] = value.detach().to(device="cpu", dtype=torch.float64).clone()


def _blocks(value, blocks, where):
    """A scalar state of a parameter in blocks: a real tensor of one finite value per block."""
    if not isinstance(value, torch.Tensor) or value.numel() != blocks or value.is_complex() \
            or not bool(torch.isfinite(value).all()):
        raise StateDictError(f"{where} must be a real tensor of {blocks} finite values (one per block of the param "
                             f"group's block_size), got {value!r}")


def _number(value, where, whole=False):
    """The saved number if ``value`` is a Python number (to become a tensor), None if it is a 1-element tensor (kept);
    anything else, a non-finite value, or a ``step`` that is not a whole number >= 0 raises."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise StateDictError(f"{where} must be a number or a 1-element real tensor, got a {value.dtype} tensor of "
                                 f"shape {tuple(value.shape)}")
        number, saved = float(value.item()), None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = saved = float(value)
    else:
        raise StateDictError(f"{where} must be a number or a 1-element tensor, got a {type(value).__name__}")
    if not math.isfinite(number) or (whole and (number < 0 or number != int(number))):
        raise StateDictError(f"{where} is {number}; it must be {'a whole number >= 0' if whole else 'finite'}")
    return saved
