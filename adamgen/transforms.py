"""Spec-to-spec transforms: options that apply to any variant of the right shape, never copies of a spec.

Each transform takes a checked ``Variant`` and returns a new one; the result is compiled like any hand-written variant.
"""

from __future__ import annotations

import dataclasses

import sympy

from .errors import SpecError
from .spec import Max, Variant, check_transformed, grad, param, reserved

EXP_AVG_SQ = sympy.Symbol("exp_avg_sq", real=True)
MAX_EXP_AVG_SQ = sympy.Symbol("max_exp_avg_sq", real=True)
MAXIMIZE = sympy.Symbol("maximize")
GRAD_SIGN = sympy.Symbol("grad_sign", real=True)


def _refuse_taken(variant: Variant, option: str, added: dict, arrays=()) -> None:
    """Refuse, naming the option, a variant that already uses a name the option adds (name -> what it is), or a name
    that the kernels derive from a state tensor the option adds (``<state>_i``, ...)."""
    names = {s.name for s, _ in (*variant.hyperparameters, *variant.states, *variant.scalar_states, *variant.definitions)}
    for name, what in added.items():
        if name in names:
            raise SpecError(f"{option} adds the {what} {name}, but variant {variant.name!r} already has a {name}; "
                            "rename it")
    for name in sorted(names):
        why = reserved(name, arrays)
        if why and not reserved(name):
            raise SpecError(f"{option} adds the state {', '.join(arrays)}, and variant {variant.name!r} has a {name}, a "
                            f"name the generated code then uses ({why}); rename it")


def _replace_definitions(variant: Variant, change) -> tuple:
    return tuple((symbol, change(symbol, expr)) for symbol, expr in variant.definitions)


def amsgrad(variant: Variant) -> Variant:
    """AMSGrad (Reddi et al., 2018): keep the running maximum of the second moment and use it wherever the update reads
    the new second moment, as ``torch.optim.Adam(amsgrad=True)`` does. Needs a state named ``exp_avg_sq``."""
    if EXP_AVG_SQ not in dict(variant.states):
        raise SpecError(f"amsgrad needs a second-moment state named exp_avg_sq; variant {variant.name!r} has none")
    v_new = variant.new_value(EXP_AVG_SQ)
    vmax_new = sympy.Symbol("max_exp_avg_sq_new", real=True)
    _refuse_taken(variant, "amsgrad", {MAX_EXP_AVG_SQ.name: "state", vmax_new.name: "definition"},
                  arrays=[MAX_EXP_AVG_SQ.name])

    definitions = []
    for symbol, expr in variant.definitions:
        if symbol != v_new:
            expr = expr.xreplace({v_new: vmax_new})
        definitions.append((symbol, expr))
        if symbol == v_new:
            definitions.append((vmax_new, Max(MAX_EXP_AVG_SQ, v_new)))
    return check_transformed(dataclasses.replace(
        variant,
        name=f"{variant.name}_amsgrad",
        states=variant.states + ((MAX_EXP_AVG_SQ, 0.0),),
        definitions=tuple(definitions),
        updates=variant.updates + ((MAX_EXP_AVG_SQ, vmax_new),),
        doc=variant.doc + " With AMSGrad's running maximum of the second moment.",
    ), "amsgrad", variant.name)


def decoupled_weight_decay(variant: Variant, name: str | None = None) -> Variant:
    """Turn coupled L2 decay (``grad + weight_decay*param`` in the rule) into decoupled decay: ``param *= 1 - lr*weight_decay``
    before the update (Loshchilov & Hutter, 2017), as torch's ``decoupled_weight_decay=True`` does.

    The new variant is named ``<name>w`` (nadam -> nadamw) unless ``name`` is given."""
    hyper = {h.name: h for h, _ in variant.hyperparameters}
    if "weight_decay" not in hyper or "lr" not in hyper:
        raise SpecError(f"decoupled_weight_decay needs hyperparameters lr and weight_decay; variant {variant.name!r} "
                        "lacks one")
    lr, weight_decay = hyper["lr"], hyper["weight_decay"]
    p_new = variant.new_value(param)

    def decouple(symbol, expr):
        expr = expr.subs(weight_decay, 0)
        if symbol == p_new:
            return expr.xreplace({param: param * (1 - lr * weight_decay)})
        return expr

    definitions = _replace_definitions(variant, decouple)
    for symbol, expr in definitions:
        if symbol != p_new and param in expr.free_symbols:
            raise SpecError(f"decoupled_weight_decay: in variant {variant.name!r}, {symbol} still reads the parameter "
                            "once weight decay is removed, so the variant does not use plain coupled L2 decay")
    return check_transformed(dataclasses.replace(variant, name=name or f"{variant.name}w", definitions=definitions,
                                                 doc=variant.doc + " With decoupled weight decay."),
                             "decoupled_weight_decay", variant.name)


MAX_LR = sympy.Symbol("max_lr", real=True)


def decouple_lr(variant: Variant) -> Variant:
    """Fully decoupled weight decay, as optimi's ``decouple_lr=True``: ``weight_decay`` reads ``weight_decay / max_lr``,
    so the decay per step is ``lr/max_lr * weight_decay`` and a good ``weight_decay`` no longer depends on the size of
    ``lr`` (only on the schedule's shape). Adds the hyperparameter ``max_lr``, the largest learning rate of the schedule,
    whose default is the variant's default ``lr``.

    Needs decay that acts on the parameter only: a variant that couples ``weight_decay`` into a state's update (Adam's
    L2 term in the gradient) is refused; apply ``decoupled_weight_decay`` first."""
    hyper = {h.name: (h, d) for h, d in variant.hyperparameters}
    if "weight_decay" not in hyper or "lr" not in hyper:
        raise SpecError(f"decouple_lr needs hyperparameters lr and weight_decay; variant {variant.name!r} lacks one")
    _refuse_taken(variant, "decouple_lr", {MAX_LR.name: "hyperparameter"})
    weight_decay = hyper["weight_decay"][0]
    reaches = {}  # definition -> whether weight_decay reaches it
    for symbol, expr in variant.definitions:
        reaches[symbol] = weight_decay in expr.free_symbols or any(reaches.get(s, False) for s in expr.free_symbols)
    coupled = [target.name for target, new in variant.updates if target != param and reaches[new]]
    if coupled:
        raise SpecError(f"decouple_lr: in variant {variant.name!r}, weight_decay reaches the update of "
                        f"{', '.join(coupled)}, so the decay is not decoupled; apply decoupled_weight_decay first")
    scaled = {weight_decay: weight_decay / MAX_LR}
    definitions = _replace_definitions(variant, lambda symbol, expr: expr.xreplace(scaled))
    return check_transformed(dataclasses.replace(
        variant,
        name=f"{variant.name}_decouple_lr",
        hyperparameters=variant.hyperparameters + ((MAX_LR, hyper["lr"][1]),),
        definitions=definitions,
        doc=variant.doc + " With fully decoupled weight decay (decay lr/max_lr * weight_decay per step).",
    ), "decouple_lr", variant.name)


def maximize(variant: Variant) -> Variant:
    """Add the ``maximize`` flag every torch optimizer has: when true the rule reads ``-grad`` for ``grad``.

    The sign is a host scalar of exactly +1 or -1, so the float results equal those of negating the gradient."""
    _refuse_taken(variant, "maximize", {MAXIMIZE.name: "hyperparameter", GRAD_SIGN.name: "definition"})
    grad_sign = sympy.Piecewise((-1, MAXIMIZE), (1, True))
    definitions = ((GRAD_SIGN, grad_sign),) + _replace_definitions(
        variant, lambda symbol, expr: expr.xreplace({grad: GRAD_SIGN * grad}))
    return dataclasses.replace(variant, hyperparameters=variant.hyperparameters + ((MAXIMIZE, False),),
                               definitions=definitions)


def with_defaults(variant: Variant, **defaults) -> Variant:
    """The same variant with other default hyperparameters (AdamW is decoupled Adam with ``weight_decay=1e-2``)."""
    known = {h.name for h, _ in variant.hyperparameters}
    unknown = sorted(set(defaults) - known)
    if unknown:
        raise SpecError(f"variant {variant.name!r} has no hyperparameter {', '.join(unknown)}")
    hyperparameters = tuple((h, defaults.get(h.name, d)) for h, d in variant.hyperparameters)
    return dataclasses.replace(variant, hyperparameters=hyperparameters)


CAUTIOUS_FLOOR = sympy.Rational(1, 1000)  # timm's floor on the mask's mean


def cautious(variant: Variant) -> Variant:
    """Cautious optimizers (Liang et al., 2024, arXiv:2411.16085), as timm's C-variants: zero the update where it
    disagrees in sign with the gradient, and rescale by the mask's mean (floored at 1e-3) to keep its size.

    The masked quantity is the per-element definition named ``direction`` when the variant has one (LAMB masks Adam's
    direction before adding decay and computing the trust ratio); otherwise the parameter's step with weight decay set
    to zero, the decay being applied unmasked."""
    from .spec import ReduceSum, numel

    mask = sympy.Symbol("cautious_mask", real=True)
    scale = sympy.Symbol("cautious_scale", real=True)
    _refuse_taken(variant, "cautious", {mask.name: "definition", scale.name: "definition"})
    named = {symbol.name: symbol for symbol, _ in variant.definitions}
    p_new = variant.new_value(param)
    if "direction" in named:  # param moves against `direction`
        direction = named["direction"]
        agreement = direction * grad
    else:  # param moves by `change`, of which `step_change` is the optimizer's step and the rest is decay
        hyper = {h.name: h for h, _ in variant.hyperparameters}
        change = variant.definition(p_new) - param
        step_change = change.subs(hyper["weight_decay"], 0) if "weight_decay" in hyper else change
        agreement = -step_change * grad
    masking = [(mask, sympy.Piecewise((1, agreement > 0), (0, True))),
               (scale, 1 / Max(ReduceSum(mask) / numel, CAUTIOUS_FLOOR))]

    definitions = []
    for symbol, expr in variant.definitions:
        if "direction" in named:
            definitions.append((symbol, expr.xreplace({direction: direction * mask * scale})))
            if symbol == direction:
                definitions[-1] = (symbol, expr)
                definitions += masking
        elif symbol == p_new:
            definitions += masking
            definitions.append((symbol, param + (change - step_change) + step_change * mask * scale))
        else:
            definitions.append((symbol, expr))
    return check_transformed(dataclasses.replace(
        variant, name=f"c{variant.name}", definitions=tuple(definitions),
        doc=variant.doc + " Cautious: the update is masked where it disagrees with the gradient.",
        reference=f"cautious form (Liang et al. 2024; timm's C-variants) of {variant.reference}"),
        "cautious", variant.name)
