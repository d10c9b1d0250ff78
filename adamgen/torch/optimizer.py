"""The ``torch.optim.Optimizer`` facade: construction, param groups, ``step``, checkpoints."""

from __future__ import annotations

import re

import torch

from ..loader import load
from ..targets import for_device, targets
from ..variants import BUILTINS, OPTIONS
from . import dispatch, state as _state
from .hyperparameters import BETA as _BETA
from .hyperparameters import (IGNORED_SWITCHES, REFUSED_SWITCHES, check_switches, check_torch_arguments, check_values,
                              torch_names, translate)
from .tensors import STATE_DTYPES, check_param


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` that updates parameters with an adamgen-generated kernel.

    ``variant``: a built-in name (``"adamw"``), a path to a spec file, or a ``Spec``. Keyword arguments are the
    variant's hyperparameters under torch's names (``betas=(b1, b2)`` stands for the spec's ``beta1``, ``beta2``; the
    spec names are accepted too) and its options (``amsgrad``, ``decoupled_weight_decay``, ...), all of which can be
    set per param group. ``state_dtype`` (``torch.float32``, ``torch.bfloat16`` or ``torch.float16``; per param group)
    makes new state tensors of that dtype instead of their parameter's (float64 parameters keep float64 states):
    float32 parameters with bfloat16 moments, for example; ``load_state_dict`` keeps them in it. With the option
    ``master_weights`` (bfloat16 parameters only) states default to float32 and an int16 ``param_remainder`` makes
    each parameter an exact float32 value. The kernels compute in float32 for float32, bfloat16 and
    float16 parameters (float64 for float64 ones) and round what they store to each tensor's dtype.

    Each step reads the parameters, gradients and state tensors where their owners put them and updates them in
    place: one kernel call per pass for all the tensors of a param group that share a device and a dtype.
    """

    # GradScaler: like torch.optim's non-fused optimizers, this one leaves the gradients' scale to GradScaler, which
    # unscales them in place and skips step() when one holds an inf or NaN (the kernels take no gradient scale, so
    # torch's fused protocol, grad_scale and found_inf handed to step(), would cost the same pass over the gradients).
    _step_supports_amp_scaling = False

    def __init__(self, params, variant="adamw", **hyperparameters):
        if isinstance(variant, str) and variant in BUILTINS:
            option_names = set(BUILTINS[variant])
        else:
            option_names = set()
        option_names |= {name for name in hyperparameters if name in OPTIONS}
        options = {name: bool(hyperparameters.pop(name, False)) for name in sorted(option_names)}
        state_dtype = _checked_state_dtype(hyperparameters.pop("state_dtype", None), "adamgen.torch.Optimizer()")
        base = load(variant, "cpu", **{name: True for name, on in options.items() if on})
        self._variant = variant
        self._option_names = tuple(sorted(option_names))
        self._modules = {}
        self._hyperparameter_plans = {}
        self._names = torch_names(base.HYPERPARAMETERS)
        defaults = dict(self._names)
        given = translate(hyperparameters, "adamgen.torch.Optimizer()", self._names.get("betas"))
        # torch's argument checks, then torch.optim's implementation switches: adamgen's kernel is always one fused
        # call over a tensor list, so foreach and fused change nothing; capturable and differentiable are refused
        check_torch_arguments(variant if isinstance(variant, str) else None, given)
        check_switches(given, "adamgen.torch.Optimizer")
        for name in IGNORED_SWITCHES + REFUSED_SWITCHES:
            given.pop(name, None)
        if option_names & {"decouple_lr", "corrected_weight_decay"}:
            defaults["max_lr"] = None  # as optimi: the group's initial lr unless given (see add_param_group)
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise TypeError(f"adamgen.torch.Optimizer: unknown hyperparameter(s) {', '.join(unknown)} for variant "
                            f"{base.VARIANT}; it takes {', '.join(defaults)} and options "
                            f"{', '.join(sorted(option_names)) or 'none'}")
        names = dict(defaults)
        defaults.update(given)
        check_values(defaults, names)  # before params are looked at, as torch
        defaults.update(options, state_dtype=state_dtype)
        super().__init__(params, defaults)

    # -- configuration -----------------------------------------------------------------------------------------------

    def add_param_group(self, param_group):
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        param_group = translate(param_group, "add_param_group", self.defaults.get("betas"))
        params = param_group.get("params")
        if isinstance(params, torch.Tensor):
            params = [params]
        elif params is not None and not isinstance(params, set):  # torch names the error for a set
            params = list(params)  # a generator is read once, here
        if params is not None:
            param_group["params"] = params
            for k, p in enumerate(params):
                if isinstance(p, tuple) and len(p) == 2:  # a named parameter, (name, tensor)
                    p = p[1]
                if isinstance(p, torch.Tensor):
                    check_param(p, f"adamgen.torch.Optimizer: parameter {k} of group {len(self.param_groups)}")
        where = f"adamgen.torch.Optimizer: param group {len(self.param_groups)}"
        if "state_dtype" in param_group:
            _checked_state_dtype(param_group["state_dtype"], where)
        block_size = param_group.get("block_size")
        if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int)
                                       or block_size < 1):
            raise TypeError(f"{where}: block_size must be None (one block per tensor) or a whole number >= 1, got "
                            f"{block_size!r}")
        check_switches(param_group, where)
        check_values(param_group, self.defaults, where)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if "max_lr" in group and group["max_lr"] is None:
            group["max_lr"] = group["lr"]

    def _modules_for(self, group) -> dict:
        """The generated module per torch device type for the group's options (loaded once each)."""
        options = tuple(name for name in self._option_names if group.get(name, False))
        modules = self._modules.get(options)
        if modules is None:
            modules = self._modules[options] = _Modules(self._variant, options)
        return modules

    def _hyperparameters(self, group, module):
        """The module's keyword arguments from a param group (torch names), falling back on the defaults."""
        plan = self._hyperparameter_plans.get(module)
        if plan is None:  # per hyperparameter: (name, index into betas or None, default, is a flag)
            plan = self._hyperparameter_plans[module] = [
                (name, int(m.group(1)) - 1 if (m := _BETA.match(name)) else None, default, isinstance(default, bool))
                for name, default in module.HYPERPARAMETERS.items()]
        values = {}
        betas = group.get("betas", self.defaults.get("betas"))
        for name, beta, default, flag in plan:
            if beta is not None and betas is not None:
                value = betas[beta]
            else:
                value = group.get(name, self.defaults.get(name, default))
            if isinstance(value, torch.Tensor):
                value = value.item()
            values[name] = value if flag else float(value)
        return values

    # -- torch.optim.Optimizer interface -----------------------------------------------------------------------------

    @torch.compiler.disable  # compiled kernels of their own: under torch.compile, one graph break at the step
    @torch.no_grad()
    def step(self, closure=None):
        """One optimizer step over every parameter that has a gradient; returns ``closure()``'s loss if given."""
        return self._step(closure, {})

    def _step(self, closure, overrides: dict):
        """``closure()``'s loss (None without one), then a step with ``overrides`` (``_step_groups``)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._step_groups(overrides)
        return loss

    def _step_groups(self, overrides: dict, advance: bool = True) -> None:
        """Run the kernels over every param group, with ``overrides`` in place of the groups' hyperparameters; without
        ``advance``, the step counters stay as they are (a call that is not a step, such as a Hessian update)."""
        # the values a scheduler or user set in the param groups since: checked before anything is written
        for index, group in enumerate(self.param_groups):
            check_values(group, self.defaults, f"adamgen.torch.Optimizer.step: param group {index}")
        for params in _rounds(self.param_groups):
            work = []
            # check every tensor of every group first, so that a bad one raises before anything is written
            for index, group, group_params in params:
                modules = self._modules_for(group)
                calls = dispatch.plan(group_params, self.state, modules, f"adamgen.torch.Optimizer: group {index}",
                                      group.get("state_dtype"), group.get("block_size"))
                if calls:
                    hyperparameters = {**self._hyperparameters(group, calls[0].module), **overrides}
                    work += [(call, hyperparameters) for call in calls]
            for call, hyperparameters in work:
                if call.device.type == "cuda":
                    with torch.cuda.device(call.device):
                        call.run(hyperparameters, advance)
                else:
                    call.run(hyperparameters, advance)

    def __getstate__(self):
        state = super().__getstate__()
        state.update(_variant=self._variant, _option_names=self._option_names, _names=self._names)
        return state

    def load_state_dict(self, state_dict):
        self._loading = state_dict  # what __setstate__ takes states from that keep a dtype of their own
        try:
            super().load_state_dict(state_dict)
        finally:
            del self._loading

    def __setstate__(self, state):
        if "defaults" not in state:
            # load_state_dict hands the loaded state (cast to the parameters) and param groups over here, after its
            # hooks and before anything of the optimizer changes: the place to refuse a checkpoint that does not fit
            module_of = lambda group: self._modules_for(group)("cpu")  # noqa: E731
            _state.check_loaded(state["state"], state["param_groups"], module_of)
            if getattr(self, "_loading", None) is not None:
                _state.keep_state_dtypes(state["state"], state["param_groups"], self._loading, module_of)
        super().__setstate__(state)
        for name in ("_modules", "_hyperparameter_plans"):
            if not hasattr(self, name):
                setattr(self, name, {})

    def __repr__(self):
        return super().__repr__().replace(type(self).__name__, f"{type(self).__name__}[{self._variant}]", 1)


def _checked_state_dtype(value, where):
    if value is not None and value not in STATE_DTYPES:
        raise TypeError(f"{where}: state_dtype must be None (each parameter's dtype) or one of "
                        f"{', '.join(map(str, STATE_DTYPES))}, got {value!r}")
    return value


class _Modules:
    """The generated modules of one option set, one per target, loaded on first use; ``modules(device_type)`` is the
    one whose kernels update tensors on that torch device type (None if no target does). ``init_values``: the state
    tensors' initial values, from the modules' metadata."""

    def __init__(self, variant, options):
        self.variant, self.options = variant, options
        self.loaded = {}
        self.init_values = self("cpu").STATE_INIT
        self.device_types = tuple(d for t in targets().values() for d in t.device_types)

    def __call__(self, device_type):
        if device_type not in self.loaded:
            target = for_device(device_type)
            if target is None:
                return None
            self.loaded[device_type] = load(self.variant, target.name, **dict.fromkeys(self.options, True))
        return self.loaded[device_type]


def _rounds(param_groups):
    """The param groups' parameters in rounds: a tensor listed twice in a group is stepped twice, as torch.optim
    steps it, so its second listing goes to a later round. Almost always one round with everything."""
    groups = list(enumerate(param_groups))
    if all(len(set(map(id, group["params"]))) == len(group["params"]) for _, group in groups):
        return [[(index, group, group["params"]) for index, group in groups]]
    rounds = []
    for index, group in groups:
        seen: dict = {}
        for p in group["params"]:
            k = seen[id(p)] = seen.get(id(p), -1) + 1
            while len(rounds) <= k:
                rounds.append({})
            rounds[k].setdefault(index, (index, group, []))[2].append(p)
    return [list(r.values()) for r in rounds]


_CLASSES: dict = {}


def optimizer_class(variant="adamw", **defaults) -> type[Optimizer]:
    """An ``Optimizer`` subclass bound to ``variant`` and default keyword arguments (options such as ``amsgrad=True``,
    hyperparameters): ``cls(params, **hyperparameters)``, the constructor signature torch.optim classes have, for code
    that takes an optimizer class (``ZeroRedundancyOptimizer(optimizer_class=...)``). Equal arguments give the same
    class."""
    try:
        key = (variant, tuple(sorted(defaults.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _CLASSES:
        return _CLASSES[key]

    def __init__(self, params, **hyperparameters):
        Optimizer.__init__(self, params, variant, **{**defaults, **hyperparameters})

    name = variant if isinstance(variant, str) else getattr(variant, "name", "Custom")
    name = re.sub(r"\W", "_", str(name).rsplit("/", 1)[-1].removesuffix(".py"))
    cls = type(f"Optimizer_{name}", (Optimizer,), {"__init__": __init__, "__module__": "adamgen.torch",
                                                   "__doc__": f"adamgen's {name} optimizer ({defaults or 'defaults'})."
                                                   })
    if key is not None:
        _CLASSES[key] = cls
    return cls


def _named(name, variant):
    cls = optimizer_class(variant)
    cls.__name__ = cls.__qualname__ = name
    cls.__doc__ = (f"torch.optim.{name}'s interface and state layout, updated by adamgen's generated {variant} kernel "
                   f"(options {', '.join(BUILTINS[variant]) or 'none'} per param group).")
    return cls


class SophiaG(optimizer_class("sophia")):
    """SophiaG with the reference's interface (``sophia_opt.SophiaG``): ``step(closure=None, bs=None)`` takes the
    number of tokens per step ``bs`` (default: the param group's ``bs``, 5120), and ``update_hessian()``, called every
    k steps once the gradients hold the gradient of the loss on labels sampled from the model's own outputs, moves
    each parameter's ``hessian`` state toward their square without changing anything else (the step counters
    included)."""

    @torch.compiler.disable
    @torch.no_grad()
    def step(self, closure=None, bs=None):
        return self._step(closure, {} if bs is None else {"bs": float(bs)})

    @torch.compiler.disable
    @torch.no_grad()
    def update_hessian(self):
        self._step_groups({"hessian_step": True}, advance=False)


class AdamMini(Optimizer):
    """Adam-mini with the reference's interface (``adam_mini.Adam_mini``): ``named_parameters`` are sorted into blocks
    by name as the reference sorts them, one second moment per block: per element for biases (Adam), per attention head
    (``dim * dim // n_heads`` elements) for queries and keys, per output neuron (a row) for embeddings, output layers,
    values, attention projections and MLPs, per tensor otherwise; no weight decay for norms and biases. Parameters of
    one kind share a param group (``block_size`` and ``weight_decay``; ``param_names`` lists them), stepped by one
    kernel call per pass."""

    EMBEDDINGS = ("embed", "embd", "wte")
    OUTPUTS = ("lm_head", "output", "final_layer")
    QUERIES_AND_KEYS = ("k_proj", "q_proj", "wq", "wk", "query", "key")
    VALUES = ("v_proj", "wv", "value")
    PROJECTIONS = ("o_proj", "wo", "attn.proj")
    MLPS = ("feed_forward", "linear", "mlp")

    def __init__(self, named_parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, dim=2048,
                 n_heads=32, n_kv_heads=None):
        if n_kv_heads is not None and n_heads % n_kv_heads:
            raise ValueError(f"adamgen.torch.AdamMini: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
        groups: dict = {}
        for name, p in named_parameters:
            if not p.requires_grad:
                continue
            key = self._kind(name.lower(), p, dim, n_heads, weight_decay)
            group = groups.setdefault(key, {"params": [], "param_names": [], "block_size": key[0],
                                            "weight_decay": key[1]})
            group["params"].append(p)
            group["param_names"].append(name)
        super().__init__(list(groups.values()), "adam_mini", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    @classmethod
    def _kind(cls, name, p, dim, n_heads, weight_decay):
        """(block_size, weight_decay) of the parameter called ``name``, by the reference's rules."""
        decay = 0.0 if "norm" in name or "ln" in name or "bias" in name else weight_decay
        if "bias" in name:
            return 1, decay
        if any(key in name for key in cls.QUERIES_AND_KEYS):
            if (dim * dim) % n_heads or p.numel() % (dim * dim // n_heads):
                raise ValueError(f"adamgen.torch.AdamMini: {name} has {p.numel()} elements, not a multiple of a "
                                 f"head's dim * dim // n_heads = {dim * dim // n_heads}")
            return dim * dim // n_heads, decay
        if any(key in name for key in cls.EMBEDDINGS + cls.OUTPUTS + cls.VALUES + cls.PROJECTIONS + cls.MLPS):
            return (p.numel() // p.shape[0] if p.dim() >= 2 and p.shape[0] else 1), decay
        return None, decay


Adam = _named("Adam", "adam")
AdamW = _named("AdamW", "adamw")
Adamax = _named("Adamax", "adamax")
NAdam = _named("NAdam", "nadam")
RAdam = _named("RAdam", "radam")


class Adafactor(optimizer_class("adafactor")):
    """torch.optim.Adafactor's interface (``lr``, ``beta2_decay``, ``eps=(eps1, eps2)``, ``d``, ``weight_decay``,
    ``foreach``, ``maximize``) and state names (``row_var``, ``col_var``; a tensor of one dimension keeps its full
    second moment in ``col_var``), updated by adamgen's generated adafactor kernels. ``eps1=None`` is the machine
    epsilon of the parameters' dtype (of the first parameter of each param group given here); the row and column
    states are float64 CPU tensors."""

    def __init__(self, params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, *,
                 foreach=None, maximize=False):
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            group_eps = group.pop("eps", eps)
            if not isinstance(group_eps, (tuple, list)) or len(group_eps) != 2:
                raise TypeError(f"Adafactor: eps must be a pair (eps1, eps2), got {group_eps!r}")
            eps1, eps2 = group_eps
            if eps1 is None:
                first = next(iter(group["params"]), None) if not isinstance(group["params"], torch.Tensor) \
                    else group["params"]
                dtype = first.dtype if isinstance(first, torch.Tensor) and first.dtype.is_floating_point \
                    else torch.float32
                eps1 = torch.finfo(dtype).eps
            group.setdefault("eps1", eps1)
            group.setdefault("eps2", eps2)
            if not isinstance(group["params"], torch.Tensor):
                group["params"] = list(group["params"])
        super().__init__(groups, lr=lr, beta2_decay=beta2_decay, d=d, weight_decay=weight_decay, foreach=foreach,
                         maximize=maximize)
