"""Hyperparameters of the ``adamgen.torch`` optimizers: torch's names for a spec's hyperparameters, and torch.optim's
checks of their values.

A spec names its decay rates ``beta1, beta2, ...``; torch.optim takes them as one tuple ``betas``. Both spellings are
accepted, param groups hold torch's.

The checks are the ones ``torch.optim.{Adam, AdamW, Adamax, NAdam, RAdam}.__init__`` make, with torch's messages:
``lr``, ``eps``, ``weight_decay`` and ``momentum_decay`` at least 0, every beta in [0, 1), a tensor hyperparameter
1-element. They are written as torch writes them, ``not 0.0 <= x``, which refuses NaN (``x < 0`` would let it through).
Every variant gets them for the hyperparameters it shares with torch (the betas of every built-in are decay rates in
[0, 1)); any other hyperparameter of a variant must not be NaN, and ``max_lr`` (the decay options divide by it) must be
above 0. Where torch checks only the constructor's arguments, these checks also run on every param group added and, at
each ``step()``, on the values a scheduler or user put in the param groups since, so that a NaN learning rate set
later raises before any parameter is written instead of turning the parameters into NaN.

The five built-ins with a torch twin also get the twin's checks of argument combinations (a tensor ``lr`` or tensor
betas with ``foreach=True`` and ``capturable=False``; ``fused`` with ``foreach`` or ``differentiable``), so that code
written against torch.optim meets the same errors.
"""

from __future__ import annotations

import numbers
import re

import torch

from ..errors import AdamgenError

BETA = re.compile(r"beta([1-9])$")

# The built-ins that reproduce a torch.optim class, by variant name: their constructors check what the twin's does.
TORCH_TWINS = {"adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam"}

# torch.optim's implementation switches. The kernel is always one fused loop, so foreach and fused change nothing;
# capturable and differentiable would need CUDA graphs and autograd through the kernel, which it does not support.
IGNORED_SWITCHES = ("foreach", "fused")
REFUSED_SWITCHES = ("capturable", "differentiable")

# Hyperparameters torch.optim requires to be at least 0, with the start of torch's message.
_AT_LEAST_ZERO = {
    "lr": "Invalid learning rate",
    "eps": "Invalid epsilon value",
    "weight_decay": "Invalid weight_decay value",
    "momentum_decay": "Invalid momentum_decay value",
}


_ABSENT = object()


class HyperparameterError(AdamgenError, ValueError):
    """A hyperparameter outside its valid range (NaN included), of the wrong kind, or a tensor hyperparameter with more
    than one element."""


def torch_names(hyperparameters: dict) -> dict:
    """A module's hyperparameter defaults under torch's names: beta1, beta2, ... become one ``betas`` tuple."""
    names, betas = {}, []
    for name, default in hyperparameters.items():
        match = BETA.match(name)
        if match and int(match.group(1)) == len(betas) + 1:
            betas.append(default)
            if "betas" not in names:
                names["betas"] = None  # keep torch's position of betas, right after lr
        else:
            names[name] = default
    if betas:
        names["betas"] = tuple(betas)
    return names


def translate(hyperparameters, where, default_betas=None):
    """Spec names to torch names: ``beta1=``, ``beta2=`` become ``betas``; betas not given by name keep their values in
    ``default_betas`` (``beta3=0.99`` alone, as prodigyopt takes it)."""
    hyperparameters = dict(hyperparameters)
    betas = {int(m.group(1)): hyperparameters.pop(name) for name in list(hyperparameters)
             if (m := BETA.match(name))}
    if betas:
        if "betas" in hyperparameters:
            raise TypeError(f"{where}: give either betas or beta1, beta2, ..., not both")
        if isinstance(default_betas, tuple) and max(betas) <= len(default_betas):
            betas = {**dict(enumerate(default_betas, start=1)), **betas}
        if sorted(betas) != list(range(1, len(betas) + 1)):
            raise TypeError(f"{where}: betas must be given as beta1, beta2, ... without gaps")
        hyperparameters["betas"] = tuple(betas[i] for i in sorted(betas))
    return hyperparameters


def check_switches(values, where):
    """Refuse ``capturable=True`` and ``differentiable=True`` (in the constructor's arguments or a param group)."""
    for name in REFUSED_SWITCHES:
        if values.get(name):
            raise HyperparameterError(f"{where}: {name}=True is not supported (the kernels run outside autograd and "
                                      "CUDA graphs)")


def check_torch_arguments(variant, arguments):
    """The checks of argument combinations that ``torch.optim.<twin>.__init__`` makes beyond the value ranges, for the
    built-ins with a torch twin (``variant`` a built-in name); torch's exception types and messages. Adamax, NAdam and
    RAdam only check that a tensor lr has one element, which ``check_values`` does for every variant."""
    if variant not in ("adam", "adamw"):
        return
    foreach, capturable = arguments.get("foreach"), arguments.get("capturable", False)
    if isinstance(arguments.get("lr"), torch.Tensor) and foreach and not capturable:
        raise HyperparameterError("lr as a Tensor is not supported for capturable=False and foreach=True")
    betas = arguments.get("betas")
    if isinstance(betas, (tuple, list)) and len(betas) == 2:
        tensors = [isinstance(beta, torch.Tensor) for beta in betas]
        if tensors[0] != tensors[1]:  # torch also refuses ints here; a Python number is accepted
            raise HyperparameterError("betas must be either both floats or both Tensors")
        for k, tensor in enumerate(tensors):
            if tensor and foreach and not capturable:
                raise HyperparameterError(f"betas[{k}] as a Tensor is not supported for capturable=False and "
                                          "foreach=True")
    if arguments.get("fused"):
        if arguments.get("differentiable"):
            raise RuntimeError("`fused` does not support `differentiable`")
        if foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")


# param group entries that are not numbers, checked where they are set (adamgen.torch.Optimizer)
NOT_NUMBERS = frozenset({"state_dtype", "block_size"})


def check_values(values, names, where=""):
    """Check the hyperparameters that ``values`` (constructor arguments or a param group) holds for the variant whose
    hyperparameters and their defaults, under torch's names, are ``names``; absent ones, flags (a bool default) and
    None where the default is None (``max_lr``, filled in later) are skipped. ``where`` prefixes the message. Runs at
    every step, once per param group: Python floats take the short way (a few microseconds per group)."""
    for name, default in names.items():
        value = values.get(name, _ABSENT)
        if value is _ABSENT or default.__class__ is bool or (value is None and default is None) or name in NOT_NUMBERS:
            continue
        if name == "betas":
            _check_betas(value, default, where)
            continue
        number = value if value.__class__ is float else _number(value, name, where)
        if name in _AT_LEAST_ZERO:
            if not 0.0 <= number:
                raise _error(where, f"{_AT_LEAST_ZERO[name]}: {value}")
        elif name == "max_lr":
            if not 0.0 < number:
                raise _error(where, f"Invalid max_lr value: {value} (decouple_lr and corrected_weight_decay divide "
                                    "by it)")
        elif number != number:
            raise _error(where, f"Invalid {name} value: {value}")


def _check_betas(betas, default, where):
    count = len(default) if isinstance(default, (tuple, list)) else None
    if betas.__class__ not in (tuple, list) or (count is not None and len(betas) != count):
        expected = f"{count} decay rates" if count is not None else "decay rates"
        raise _error(where, f"betas must be a tuple of {expected}, got {betas!r}")
    for k, beta in enumerate(betas):
        number = beta if beta.__class__ is float else _number(beta, f"betas[{k}]", where)
        if not 0.0 <= number < 1.0:
            raise _error(where, f"Invalid beta parameter at index {k}: {beta}")


def _number(value, name, where):
    """A hyperparameter as a Python float: a real number or a 1-element real tensor."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise _error(where, f"Tensor {name} must be 1-element")
        if value.is_complex():
            raise _error(where, f"Tensor {name} must be real, got {value.dtype}")
        return float(value.item())
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise _error(where, f"{name} must be a real number or a 1-element tensor, got {type(value).__name__}")


def _error(where, message):
    return HyperparameterError(f"{where}: {message}" if where else message)
