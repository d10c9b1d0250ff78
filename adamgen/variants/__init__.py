"""The built-in variants and the options that apply to them.

Each built-in is a spec file in this folder, written exactly as a user's spec file is: a module-level ``spec``.
"""

from __future__ import annotations

import importlib
import itertools

from .. import transforms
from ..errors import GenerateError, SpecError
from ..spec import Spec, Variant, validate

# name -> options it takes (each a spec-to-spec transform)
BUILTINS: dict[str, tuple[str, ...]] = {
    "adam": ("amsgrad",),
    "adamw": ("amsgrad", "decouple_lr", "cautious"),
    "adamax": (),
    "nadam": ("decoupled_weight_decay",),
    "radam": ("decoupled_weight_decay",),
    "adabelief": (),
    "yogi": (),
    "qhadam": (),
    "laprop": ("amsgrad",),
    "adan": ("decouple_lr",),
    "lion": ("decouple_lr", "cautious"),
    "adopt": (),
    "ademamix": (),
    "adam_atan2": (),
    "lamb": ("cautious",),
    "stableadamw": ("decouple_lr",),
    "mars": (),
    "schedulefree_adamw": (),
    "prodigy": (),
    "dadapt_adam": (),
    "sophia": (),
    "adam_mini": (),
    "adafactor": (),
    "came": (),
}

OPTIONS = {
    "decoupled_weight_decay": transforms.decoupled_weight_decay,
    "amsgrad": transforms.amsgrad,
    "decouple_lr": transforms.decouple_lr,
    "cautious": transforms.cautious,
    "corrected_weight_decay": transforms.corrected_weight_decay,
    "cautious_weight_decay": transforms.cautious_weight_decay,
    "clip_grad_norm": transforms.clip_grad_norm,
    "stochastic_rounding": transforms.stochastic_rounding,
    "kahan": transforms.kahan,  # after the others: it compensates the update they made
    "master_weights": transforms.master_weights,  # last: every read of the parameter becomes the float32 value
}

# options that no built-in lists (so none is shipped in generated/): generated on demand for any variant they fit
ON_DEMAND = tuple(option for option in OPTIONS if not any(option in listed for listed in BUILTINS.values()))
# options that cannot go together, and why
EXCLUSIVE = [("decouple_lr", "corrected_weight_decay", "both rescale the weight decay"),
             ("stochastic_rounding", "kahan", "both decide how the parameter's store rounds"),
             ("stochastic_rounding", "master_weights", "both decide how the parameter's store rounds"),
             ("kahan", "master_weights", "both decide how the parameter's store rounds")]


def as_variant(spec) -> Variant:
    """A checked variant from a ``Spec`` (validated here) or a ``Variant`` (already checked)."""
    if isinstance(spec, Variant):
        return spec
    if isinstance(spec, Spec):
        return validate(spec)
    raise SpecError(f"expected an adamgen Spec or Variant, got {type(spec).__name__}")


def builtin(name: str) -> Variant:
    """The checked variant of a built-in, without options."""
    if name not in BUILTINS:
        raise GenerateError(f"unknown variant {name!r}; built-in variants: {', '.join(BUILTINS)}")
    return as_variant(importlib.import_module(f"{__name__}.{name}").spec)


def with_options(variant: Variant, **options) -> Variant:
    """Apply option transforms (``amsgrad=True`` ...), in a fixed order so that equal options give equal variants."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise GenerateError(f"unknown option(s) {', '.join(unknown)}; options: {', '.join(OPTIONS)}")
    for first, second, why in EXCLUSIVE:
        if options.get(first) and options.get(second):
            raise GenerateError(f"options {first} and {second} {why}; choose one")
    for name, transform in OPTIONS.items():
        if options.get(name):
            variant = transform(variant)
    return variant


def builtin_variants() -> list[tuple[str, dict, Variant]]:
    """Every built-in under every combination of its options: (name, options, variant)."""
    result = []
    for name, allowed in BUILTINS.items():
        for chosen in itertools.chain.from_iterable(itertools.combinations(allowed, k) for k in range(len(allowed) + 1)):
            options = {option: True for option in chosen}
            result.append((name, options, with_options(builtin(name), **options)))
    return result
