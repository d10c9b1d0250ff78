"""Spec-to-spec transforms: options that apply to any variant of the right shape, never copies of a spec.

Each transform takes a checked ``Variant`` and returns a new one; the result is compiled like any hand-written variant.
"""

from __future__ import annotations

import dataclasses

import sympy

from .errors import SpecError
from .spec import Evaluated, GroupSum, HighHalf, LowHalf, Max, RandomlyStored, Stored, Variant, \
    check_transformed, grad, param, reserved, step

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
    return _rescaled_decay(variant, "decouple_lr", lambda lr: 1 / MAX_LR,
                           " With fully decoupled weight decay (decay lr/max_lr * weight_decay per step).")


def corrected_weight_decay(variant: Variant) -> Variant:
    """Corrected weight decay (Defazio et al. 2025, arXiv:2506.02285; timm's ``corrected_weight_decay``): the decoupled
    decay per step is ``lr**2/max_lr * weight_decay`` instead of ``lr * weight_decay``, so that a decay tuned at the
    peak learning rate keeps the weights' steady-state norm as the schedule lowers ``lr``. Adds the hyperparameter
    ``max_lr``, whose default is the variant's default ``lr``. Needs decoupled decay, as ``decouple_lr``."""
    return _rescaled_decay(variant, "corrected_weight_decay", lambda lr: lr / MAX_LR,
                           " With corrected weight decay (decay lr**2/max_lr * weight_decay per step).")


def _rescaled_decay(variant: Variant, option: str, scale, doc: str) -> Variant:
    """``weight_decay`` read as ``weight_decay * scale(lr)`` wherever the rule reads it, with the hyperparameter
    ``max_lr`` added; refused unless the decay acts on the parameter only."""
    hyper = _decoupled_decay(variant, option)
    _refuse_taken(variant, option, {MAX_LR.name: "hyperparameter"})
    weight_decay, lr = hyper["weight_decay"][0], hyper["lr"][0]
    scaled = {weight_decay: weight_decay * scale(lr)}
    definitions = _replace_definitions(variant, lambda symbol, expr: expr.xreplace(scaled))
    return check_transformed(dataclasses.replace(
        variant,
        name=f"{variant.name}_{option}",
        hyperparameters=variant.hyperparameters + ((MAX_LR, hyper["lr"][1]),),
        definitions=definitions,
        doc=variant.doc + doc,
    ), option, variant.name)


def _decoupled_decay(variant: Variant, option: str) -> dict:
    """The variant's hyperparameters by name (symbol, default), after checking that it has ``lr`` and a
    ``weight_decay`` that reaches no state's update (decay that acts on the parameter only)."""
    hyper = {h.name: (h, d) for h, d in variant.hyperparameters}
    if "weight_decay" not in hyper or "lr" not in hyper:
        raise SpecError(f"{option} needs hyperparameters lr and weight_decay; variant {variant.name!r} lacks one")
    weight_decay = hyper["weight_decay"][0]
    reaches = {}  # definition -> whether weight_decay reaches it
    for symbol, expr in variant.definitions:
        reaches[symbol] = weight_decay in expr.free_symbols or any(reaches.get(s, False) for s in expr.free_symbols)
    coupled = [target.name for target, new in variant.updates if target != param and reaches[new]]
    if coupled:
        raise SpecError(f"{option}: in variant {variant.name!r}, weight_decay reaches the update of "
                        f"{', '.join(coupled)}, so the decay is not decoupled; apply decoupled_weight_decay first")
    return hyper


def cautious_weight_decay(variant: Variant) -> Variant:
    """Cautious weight decay (Chen et al. 2025, arXiv:2510.12402; HeavyBall's ``cautious_weight_decay``): decoupled
    decay only where the parameter and the optimizer's update ``u`` agree in sign (``u * param >= 0``, ``u`` being
    what the parameter moves against: ``param - lr*u``), none elsewhere: ``param * (1 - lr*weight_decay*[u*param >= 0])
    - lr*u``: where the signs agree the variant's own rule, elsewhere the rule with ``weight_decay`` set to zero.

    The update is the parameter's change with ``weight_decay`` set to zero; ``weight_decay`` must appear in the
    parameter's update and nowhere else (decoupled decay written in the rule, as adamw, lion and adan write it)."""
    hyper = _decoupled_decay(variant, "cautious_weight_decay")
    weight_decay = hyper["weight_decay"][0]
    p_new = variant.new_value(param)
    rule = variant.definition(p_new)
    elsewhere = [s.name for s, expr in variant.definitions if s != p_new and weight_decay in expr.free_symbols]
    if elsewhere or weight_decay not in rule.free_symbols:
        readers = f" (it is read by {', '.join(elsewhere)})" if elsewhere else ""
        raise SpecError(f"cautious_weight_decay: in variant {variant.name!r}, weight_decay must appear in the "
                        f"parameter's update only{readers}")
    undecayed = rule.subs(weight_decay, 0)
    step_change = undecayed - param  # -lr*u: what the parameter would move by without decay
    # compared with zero one by one, not as a product: a product of two small numbers rounds to zero, which would
    # read as agreement
    agreement = sympy.Or(sympy.And(step_change <= 0, param >= 0), sympy.And(step_change >= 0, param <= 0))
    cautious_rule = sympy.Piecewise((rule, agreement), (undecayed, True))
    definitions = tuple((symbol, cautious_rule if symbol == p_new else expr) for symbol, expr in variant.definitions)
    return check_transformed(dataclasses.replace(
        variant, name=f"{variant.name}_cautious_weight_decay", definitions=definitions,
        doc=variant.doc + " With cautious weight decay (only where the parameter and the update agree in sign).",
    ), "cautious_weight_decay", variant.name)


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


GRAD_NORM = sympy.Symbol("grad_norm", real=True)
GRAD_CLIP = sympy.Symbol("grad_clip", real=True)
MAX_GRAD_NORM = sympy.Symbol("max_grad_norm", real=True)


def clip_grad_norm(variant: Variant) -> Variant:
    """Global gradient-norm clipping before the rule, as timm's Lamb and apex's FusedLAMB do with ``max_grad_norm``:
    ``grad_norm`` is the Euclidean norm of every gradient stepped together (a ``GroupSum``: the tensors of one
    ``step_many`` call, a param group in ``adamgen.torch``), and the rule reads ``grad / grad_clip`` with ``grad_clip =
    grad_norm / max_grad_norm`` where the norm exceeds ``max_grad_norm``, else 1. Adds the hyperparameter
    ``max_grad_norm`` (default 1.0; ``inf`` turns clipping off) and a reduce pass over the gradients."""
    _refuse_taken(variant, "clip_grad_norm", {MAX_GRAD_NORM.name: "hyperparameter", GRAD_NORM.name: "definition",
                                              GRAD_CLIP.name: "definition"})
    clipping = ((GRAD_NORM, sympy.sqrt(GroupSum(grad**2))),
                (GRAD_CLIP, sympy.Piecewise((GRAD_NORM / MAX_GRAD_NORM, GRAD_NORM > MAX_GRAD_NORM), (1, True))))
    definitions = clipping + _replace_definitions(variant, lambda symbol, expr: expr.xreplace({grad: grad / GRAD_CLIP}))
    return check_transformed(dataclasses.replace(
        variant,
        name=f"{variant.name}_clip_grad_norm",
        hyperparameters=variant.hyperparameters + ((MAX_GRAD_NORM, 1.0),),
        definitions=definitions,
        doc=variant.doc + " With the gradients clipped to a global norm of max_grad_norm.",
    ), "clip_grad_norm", variant.name)


KAHAN_COMP = sympy.Symbol("kahan_comp", real=True)


def kahan(variant: Variant) -> Variant:
    """Kahan-compensated parameter updates, for parameters stored in fewer bits than the kernels compute in (bfloat16,
    float16), where a small update can be lost to rounding step after step. The update becomes a change ``delta`` of
    the parameter, derived from the rule symbolically (``_change``: the new value minus the parameter, with the
    parameter's own term cancelled, never a difference of rounded values), added to a state ``kahan_comp`` that
    carries what earlier stores rounded away: ``c = kahan_comp + delta``, ``param_new = stored(param + c)``,
    ``kahan_comp_new = c - (param_new - param)`` (``param_new - param`` is exact in float32), as
    ``optimi``'s ``kahan_sum``. ``kahan_comp`` is stored as the other states (the parameter's dtype unless
    ``state_dtype`` says otherwise); in exact arithmetic the rule is unchanged."""
    p_new = variant.new_value(param)
    names = {"kahan_comp": "state", "kahan_delta": "definition", "kahan_sum": "definition",
             "param_kahan": "definition", "kahan_comp_new": "definition"}
    _refuse_taken(variant, "kahan", names, arrays=[KAHAN_COMP.name])
    delta, total, new, comp_new = (sympy.Symbol(name, real=True) for name in list(names)[1:])
    definitions = variant.definitions + (
        (delta, _change(variant.definition(p_new))),
        (total, Evaluated(KAHAN_COMP + delta)),
        (new, Stored(param + total)),
        (comp_new, total - Evaluated(new - param)),
    )
    return check_transformed(dataclasses.replace(
        variant,
        name=f"{variant.name}_kahan",
        states=variant.states + ((KAHAN_COMP, 0.0),),
        definitions=definitions,
        updates=_param_update(variant, new) + ((KAHAN_COMP, comp_new),),
        doc=variant.doc + " With Kahan-compensated parameter updates.",
    ), "kahan", variant.name)


def _param_update(variant: Variant, new) -> tuple:
    """The variant's updates with the parameter's new value taken from the definition ``new``."""
    return tuple((target, new if target == param else value) for target, value in variant.updates)


def _change(expr):
    """``expr - param`` with the parameter's own term cancelled where the rule writes it as a term or a factor of one
    (``param*(1 - lr*wd) - x`` gives ``-lr*wd*param - x``), in each branch of a Piecewise."""
    if isinstance(expr, sympy.Piecewise):
        return sympy.Piecewise(*((_change(value), condition) for value, condition in expr.args))
    hints = dict(deep=False, mul=True, multinomial=False, power_exp=False, power_base=False, log=False)
    terms = [t.expand(**hints) if t.is_Mul and param in t.args else t for t in sympy.Add.make_args(expr)]
    return sympy.Add(*terms) - param


def stochastic_rounding(variant: Variant) -> Variant:
    """Stochastic rounding of bfloat16 parameters (``RandomlyStored``): the new value is rounded up or down with
    probabilities that make its expectation the float32 value, so updates smaller than half an ulp are kept on
    average rather than lost. Adds the hyperparameter ``seed`` (an integer below 2**24, exact in float32; default 0):
    the random bits hash (seed, step, tensor index in the call, element index), the same on the CPU and the GPU.
    Parameters of other formats round to nearest as always."""
    p_new = variant.new_value(param)
    seed, rounded = sympy.Symbol("seed", real=True), sympy.Symbol("param_rounded", real=True)
    _refuse_taken(variant, "stochastic_rounding", {"seed": "hyperparameter", "param_rounded": "definition"})
    return check_transformed(dataclasses.replace(
        variant,
        name=f"{variant.name}_stochastic_rounding",
        hyperparameters=variant.hyperparameters + ((seed, 0.0),),
        definitions=variant.definitions + ((rounded, RandomlyStored(p_new, seed, step)),),
        updates=_param_update(variant, rounded),
        doc=variant.doc + " With stochastic rounding of bfloat16 parameters.",
    ), "stochastic_rounding", variant.name)


PARAM_REMAINDER = sympy.Symbol("param_remainder", real=True)


def master_weights(variant: Variant) -> Variant:
    """Exact float32 master weights in bfloat16 parameters: a state ``param_remainder`` (int16) holds the low 16 bits
    of each float32 value, the bfloat16 parameter its high 16 bits rounded up where the low ones are 0x8000 or more (so
    the parameter is the float32 value to nearest, ties away from zero, for the forward pass): the new value is split
    with ``HighHalf`` and ``LowHalf``, and the kernels read the parameter as the float32 value the two hold (the rule
    itself is unchanged, so they compute exactly what they compute for a float32 parameter). The trajectory is bit for
    bit the one float32 parameters take, with 4 bytes per parameter instead of the 6 of a float32 copy beside a
    bfloat16 one (TransformerEngine's ``store_param_remainders``). For bfloat16 parameters only; the other states
    default to float32."""
    p_new = variant.new_value(param)
    names = {"param_remainder": "state", "param_high": "definition", "param_remainder_new": "definition"}
    _refuse_taken(variant, "master_weights", names, arrays=[PARAM_REMAINDER.name])
    high, low = (sympy.Symbol(name, real=True) for name in list(names)[1:])
    return check_transformed(dataclasses.replace(
        variant,
        name=f"{variant.name}_master_weights",
        states=variant.states + ((PARAM_REMAINDER, 0.0),),
        definitions=variant.definitions + ((high, HighHalf(p_new)), (low, LowHalf(p_new))),
        updates=_param_update(variant, high) + ((PARAM_REMAINDER, low),),
        doc=variant.doc + " With float32 master weights kept as bfloat16 parameters and int16 remainders.",
    ), "master_weights", variant.name)
