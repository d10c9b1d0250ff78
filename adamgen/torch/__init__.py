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

CPU tensors are updated in place through ``Tensor.numpy()`` views, never copied; CUDA tensors are passed to the CUDA
kernels, which launch on torch's current stream.

Many tensors per call (``flat=True``, the default for elementwise variants): on its first step the optimizer lays each
param group's parameters (those that own their storage), their states and their gradients out as views of one flat
buffer per device and dtype (``param.data`` is re-pointed to its view), so one kernel call updates a whole group. Every
step it checks where the tensors really are: consecutive parameters whose parameters and gradients lie end to end in
memory, with equal step counts, go in one call; anything else (a gradient that autograd allocated anew after
``zero_grad(set_to_none=True)``, a parameter someone re-pointed, a param without a gradient in between) is split off
and stepped on its own, with its state still in the flat buffer. Results never depend on the mode. Gradients stay in
the flat buffer when they accumulate into existing tensors: ``zero_grad(set_to_none=False)`` (or DDP, which copies
into existing gradients) keeps the one-call path every step.
"""

from __future__ import annotations

import operator
import re
from collections import defaultdict

import numpy as np
import torch

from ..errors import AdamgenError
from ..loader import load
from ..variants import BUILTINS, OPTIONS
from . import state as _state
from .hyperparameters import BETA as _BETA
from .hyperparameters import (IGNORED_SWITCHES, REFUSED_SWITCHES, HyperparameterError, check_switches,
                              check_torch_arguments, check_values, torch_names, translate)
from .state import StateDictError

__all__ = ["Optimizer", "optimizer_class", "UnsupportedTensorError", "HyperparameterError", "StateDictError", "Adam",
           "AdamW", "Adamax", "NAdam", "RAdam"]

_KERNEL_DTYPES = (torch.float32, torch.float64)
_TARGETS = ("cpu", "cuda")


class UnsupportedTensorError(AdamgenError, TypeError):
    """A parameter or gradient the generated kernels cannot update: not float32/float64, sparse, on another device."""


def _elementwise(module) -> bool:
    """Whether the module's update reads nothing but the element itself, so that one call over many tensors laid end to
    end equals one call per tensor. Per-tensor reductions (norms, means) and the element count break that."""
    return bool(module.ELEMENTWISE)


def _is_dense(tensor) -> bool:
    """Non-overlapping and dense with positive strides: its elements fill one block of memory, in some order."""
    if tensor.is_contiguous():
        return True
    expected = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride()), key=lambda pair: pair[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _memory_order(tensor):
    """A 1-D view of a dense tensor's elements in memory order (no copy)."""
    tensor = tensor.detach()
    if tensor.is_contiguous():
        return tensor.view(-1)
    return tensor.as_strided((tensor.numel(),), (1,), tensor.storage_offset())


def _owns_storage(tensor) -> bool:
    """Whether the tensor is the whole of its storage: re-pointing it cannot break a view someone else relies on."""
    return (tensor.storage_offset() == 0 and _is_dense(tensor)
            and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size())


class _Block:
    """The parameters of one param group that share a device and a dtype, and their optimizer state.

    ``views[k]`` is parameter k's state dict in torch's layout: ``step`` (a float32 0-d tensor), one tensor per state
    array shaped and strided like the parameter, and one float64 0-d tensor per scalar state. The step counts and scalar
    states of the block live in one CPU tensor each, so one numpy assignment advances a whole call's worth of them.
    With ``flat``, every state array lives in one flat buffer (parameter k at ``offsets[k]``), and so do the parameters
    and gradients where they can be moved there."""

    def __init__(self, params, old_states, module, init_values, flat):
        first = params[0]
        self.params = params
        self.device, self.dtype = first.device, first.dtype
        self.cpu = self.device.type == "cpu"
        self.flat = flat
        self.names = module.STATES
        self.scalar_names = tuple(module.SCALAR_STATES)
        self.numels = [p.numel() for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(self.numels)]).tolist()
        total = self.offsets[-1]
        count = len(params)
        self.itemsize = first.element_size()
        self.steps = torch.zeros(count, dtype=torch.float32)
        self.steps_np = self.steps.numpy()
        self.scalars = {name: torch.full((count,), float(module.SCALAR_STATES[name]), dtype=torch.float64)
                        for name in self.scalar_names}
        self.scalars_np = {name: tensor.numpy() for name, tensor in self.scalars.items()}
        self.param_flat = self.grad_flat = self.param_array = self.grad_array = None
        self.param_start = self.grad_start = 0
        self.param_slots = self.grad_slots = None
        self.exposed = [bool(old_states.get(p)) for p in params]
        self.param_cache = [None] * count  # per parameter: (address, strides, kernel array) of its last call
        if flat:
            self.buffers = {name: self._new(total, init_values[name]) for name in self.names}
            self.buffer_arrays = {name: self._array(buffer) for name, buffer in self.buffers.items()}
            self._move_params(total)
        self.views, self.state_arrays = [], []
        for k, p in enumerate(params):
            views = {"step": self.steps[k]}
            arrays = []
            for name in self.names:
                if flat:
                    tensor = self.buffers[name].as_strided(p.shape, p.stride(), self.offsets[k])
                    arrays.append(self.buffer_arrays[name][self.offsets[k]:self.offsets[k + 1]])
                elif p.is_contiguous():
                    tensor = self._new(p.numel(), init_values[name]).view(p.shape)
                    arrays.append(self._array(tensor))
                else:
                    tensor = torch.empty_like(p, memory_format=torch.preserve_format).fill_(init_values[name])
                    arrays.append(self._array(_memory_order(tensor)))
                views[name] = tensor
            for name in self.scalar_names:
                views[name] = self.scalars[name][k]
            old = old_states.get(p)
            if old:
                self._restore(k, views, old)
            self.views.append(views)
            self.state_arrays.append(arrays)
        if flat and self.param_flat is not None:
            self._adopt_grads(total)

    def _new(self, count, value):
        """A 1-D tensor of ``count`` elements filled with ``value`` (None: uninitialised). On the CPU numpy allocates
        it: numpy asks the kernel for transparent huge pages on large arrays (torch's allocator does not), which made
        the update kernel ~25% faster on 2^24 elements here, as it spends fewer cycles on TLB misses."""
        if self.cpu:
            dtype = np.float32 if self.dtype == torch.float32 else np.float64
            array = np.empty(count, dtype) if value is None else np.full(count, value, dtype)
            return torch.from_numpy(array)
        if value is None:
            return torch.empty(count, dtype=self.dtype, device=self.device)
        return torch.full((count,), value, dtype=self.dtype, device=self.device)

    def _array(self, tensor):
        """What the kernel takes, 1-D: a numpy view of a CPU tensor, the (detached) tensor itself on CUDA."""
        if not self.cpu:
            return tensor.detach().reshape(-1)  # a view: every tensor passed here is contiguous
        return (tensor.detach() if tensor.requires_grad else tensor).numpy().reshape(-1)

    def _restore(self, k, views, old):
        """Copy a parameter's existing state (ours before a re-layout, or loaded from a checkpoint) into the new views;
        keys this variant does not know are kept as they are."""
        for key, value in old.items():
            if key == "step":
                self.steps_np[k] = float(value)
            elif key in self.scalars_np:
                self.scalars_np[key][k] = float(value)
            elif key in self.names:
                views[key].copy_(value)
            else:
                views[key] = value

    def _span_of(self, tensors):
        """A 1-D view over ``tensors`` if they already lie end to end in one storage, in order
        (ZeroRedundancyOptimizer's buckets, or this optimizer's buffers of an earlier layout); else None."""
        sized = [t for t in tensors if t.numel()]
        if not sized or not all(t.dtype == self.dtype and t.device == self.device and _is_dense(t) for t in sized):
            return None
        storage = sized[0].untyped_storage().data_ptr()
        address = sized[0].data_ptr()
        for t in sized:
            if t.data_ptr() != address or t.untyped_storage().data_ptr() != storage:
                return None
            address += t.numel() * self.itemsize
        first = sized[0].detach()
        return first.as_strided((self.offsets[-1],), (1,), first.storage_offset())

    def _move_params(self, total):
        """Lay the parameters end to end: keep them where they are if they already are (in someone's buckets, or in
        this optimizer's buffer of an earlier layout), else re-point each to its view of one new flat buffer if each
        owns its storage (a parameter that is a view into something else stays where it is)."""
        if len(self.params) < 2:
            return
        params = [p.data for p in self.params]
        self.param_flat = self._span_of(params)
        if self.param_flat is None:
            if not all(_owns_storage(p) for p in params):
                return
            self.param_flat = self._new(total, None)
            for k, p in enumerate(self.params):
                self.param_flat[self.offsets[k]:self.offsets[k + 1]].copy_(_memory_order(p.data))
                p.data = self.param_flat.as_strided(p.shape, p.stride(), self.offsets[k])
        self.param_array = self._array(self.param_flat)
        self.param_start = self.param_flat.data_ptr()
        self.param_slots = [self.param_start + offset * self.itemsize for offset in self.offsets[:-1]]

    def _adopt_grads(self, total):
        """Lay existing gradients end to end too (where they are, or moved into a new flat buffer), so that gradients
        accumulated in place stay in one call's reach."""
        grads = [p.grad for p in self.params]
        if all(g is not None and g.layout == torch.strided and g.stride() == p.stride()
               for g, p in zip(grads, self.params)):
            self.grad_flat = self._span_of(grads)
        if self.grad_flat is None:
            movable = [k for k, (p, g) in enumerate(zip(self.params, grads)) if g is not None and not g.is_sparse
                       and g.dtype == self.dtype and g.stride() == p.stride() and _owns_storage(g)]
            if not movable:
                return
            self.grad_flat = self._new(total, 0.0)
            for k in movable:
                p = self.params[k]
                view = self.grad_flat.as_strided(p.shape, p.stride(), self.offsets[k])
                view.copy_(p.grad)
                p.grad = view
        self.grad_array = self._array(self.grad_flat)
        self.grad_start = self.grad_flat.data_ptr()
        self.grad_slots = [self.grad_start + offset * self.itemsize for offset in self.offsets[:-1]]

    def current(self, state) -> bool:
        """Whether the optimizer's state dicts are still this block's views (load_state_dict, ZeRO and users may replace
        them); notes which parameters have state."""
        for k, (p, views) in enumerate(zip(self.params, self.views)):
            held = dict.get(state, p)
            if held and held is not views:
                return False
            self.exposed[k] = held is views
        return True

    def _expose(self, state, k):
        """Give parameter k its state dict on its first step, as torch.optim creates state lazily."""
        dict.__setitem__(state, self.params[k], self.views[k])
        self.exposed[k] = True

    def plan(self, state, where):
        """Validate every gradient, then cut the parameters that have one into calls: runs of consecutive parameters
        whose parameters and gradients lie end to end in one storage each, with equal step counts and scalar states.

        The common case costs a few attribute reads per parameter: a parameter and a gradient found at their slots of
        the block's flat buffers are views of them (nothing else can live at those addresses while the buffers do), so
        they are valid and join their neighbours as they are."""
        slots = self.param_flat is not None and self.grad_flat is not None
        if slots and all(self.exposed):  # the steady state: every parameter and gradient at its slot, one call
            try:
                for p, param_slot, grad_slot in zip(self.params, self.param_slots, self.grad_slots):
                    g = p.grad
                    if g is None or g.data_ptr() != grad_slot or p.data_ptr() != param_slot:
                        break
                else:
                    return self._equal_counters(0, len(self.params))
            except RuntimeError:  # a sparse gradient: the loop below names it
                pass
        runs = []
        run = None
        param_slots, grad_slots = self.param_slots, self.grad_slots
        in_slots = 0
        for k, p in enumerate(self.params):
            g = p.grad
            if g is None:
                run = None
                continue
            try:
                grad_address = g.data_ptr()
            except RuntimeError:  # a sparse gradient has no data pointer: _validate names it
                grad_address = None
            if slots and grad_address == grad_slots[k] and p.data_ptr() == param_slots[k]:
                in_slots += 1
                if not self.exposed[k]:
                    self._expose(state, k)
                if run is not None and run[1] == k and run[2] is None:
                    run[1] = k + 1
                else:
                    run = [k, k + 1, None]
                    runs.append(run)
                continue
            self._validate(k, p, g, where)
            if not self.exposed[k]:
                self._expose(state, k)
            if not self.flat:
                runs.append((k, k + 1))
                continue
            p_address, g_address = p.data_ptr(), grad_address
            nbytes = self.numels[k] * self.itemsize
            joinable = p.is_contiguous() and g.is_contiguous()
            if (joinable and run is not None and run[2] is not None and run[2][4] and run[1] == k
                    and p_address == run[2][0] and g_address == run[2][1]
                    and p.untyped_storage().data_ptr() == run[2][2] and g.untyped_storage().data_ptr() == run[2][3]):
                run[1] = k + 1
                run[2][0], run[2][1] = p_address + nbytes, g_address + nbytes
            else:
                run = [k, k + 1, [p_address + nbytes, g_address + nbytes, p.untyped_storage().data_ptr(),
                                  g.untyped_storage().data_ptr(), joinable]]
                runs.append(run)
        if self.grad_flat is not None and in_slots == 0 and runs:
            self.grad_flat = self.grad_array = None  # every gradient was replaced (set_to_none): free the buffer
        if not self.flat:
            return runs
        return [piece for k0, k1, _ in runs for piece in self._equal_counters(k0, k1)]

    def _validate(self, k, p, g, where):
        if g.layout != torch.strided:
            raise UnsupportedTensorError(f"{where}: parameter {k} has a sparse gradient ({g.layout}); adamgen's "
                                         "kernels take dense gradients (torch.optim.SparseAdam handles sparse ones)")
        if g.dtype != p.dtype or g.shape != p.shape or g.device != p.device:
            raise UnsupportedTensorError(f"{where}: parameter {k} is {p.dtype} {tuple(p.shape)} on {p.device} but "
                                         f"its gradient is {g.dtype} {tuple(g.shape)} on {g.device}")
        if p.dtype != self.dtype or p.device != self.device or not _is_dense(p):
            raise UnsupportedTensorError(f"{where}: parameter {k} changed to {p.dtype} on {p.device} with strides "
                                         f"{p.stride()} after its state was created ({self.dtype} on {self.device})")

    def _equal_counters(self, k0, k1):
        """[k0, k1) cut where the step count or a scalar state changes (parameters that missed steps)."""
        if k1 - k0 == 1:
            return [(k0, k1)]
        columns = [self.steps_np[k0:k1], *(values[k0:k1] for values in self.scalars_np.values())]
        if all(column.min() == column.max() for column in columns):
            return [(k0, k1)]
        pieces, first = [], k0
        for k in range(k0 + 1, k1):
            if any(column[k - k0] != column[first - k0] for column in columns):
                pieces.append((first, k))
                first = k
        pieces.append((first, k1))
        return pieces

    def _span(self, first, k0, k1, flat, flat_array, flat_start):
        """One 1-D kernel array over parameters (or gradients) k0..k1-1 of the block, which lie end to end from
        ``first``'s start."""
        start, stop = self.offsets[k0], self.offsets[k1]
        if flat is not None and first.data_ptr() == flat_start + start * self.itemsize:
            return flat_array[start:stop]
        first = first.detach()
        return self._array(first.as_strided((stop - start,), (1,), first.storage_offset()))

    def step(self, module, hyperparameters, runs):
        """One kernel call per run; step counts and scalar states of the run advance together."""
        kernel = module.step
        steps, scalars = self.steps_np, self.scalars_np
        for k0, k1 in runs:
            p = self.params[k0]
            g = p.grad
            if k1 - k0 == 1:
                cached = self.param_cache[k0]
                if cached is not None and cached[0] == p.data_ptr() and cached[1] == p.stride():
                    param = cached[2]  # the array's base keeps that memory alive: same address, same tensor data
                else:
                    param = self._array(_memory_order(p))
                    self.param_cache[k0] = (p.data_ptr(), p.stride(), param)
                if g.stride() != p.stride():
                    g = torch.empty_like(p).copy_(g)  # the gradient in the parameter's memory order
                grad = self._array(g if g.is_contiguous() else _memory_order(g))
                kernel_state = dict(zip(self.names, self.state_arrays[k0]))
            else:
                param = self._span(p, k0, k1, self.param_flat, self.param_array, self.param_start)
                grad = self._span(g, k0, k1, self.grad_flat, self.grad_array, self.grad_start)
                start, stop = self.offsets[k0], self.offsets[k1]
                kernel_state = {name: self.buffer_arrays[name][start:stop] for name in self.names}
            kernel_state["step"] = int(steps[k0])
            for name in self.scalar_names:
                kernel_state[name] = float(scalars[name][k0])
            kernel(param, grad, kernel_state, **hyperparameters)
            steps[k0:k1] = kernel_state["step"]
            for name in self.scalar_names:
                scalars[name][k0:k1] = kernel_state[name]


class _StateDict(defaultdict):
    """``optimizer.state`` (a ``defaultdict(dict)`` as torch's) that counts changes to its entries, so that a step can
    tell in O(1) that nobody replaced a parameter's state dict since the last one (ZeroRedundancyOptimizer assigns
    ``optim.state[param]`` directly)."""

    def __init__(self, default_factory=dict, *args, **kwargs):
        super().__init__(default_factory, *args, **kwargs)
        self.version = 0

    def __setitem__(self, key, value):
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self.version += 1
        super().__delitem__(key)

    def update(self, *args, **kwargs):
        self.version += 1
        super().update(*args, **kwargs)

    def pop(self, *args):
        self.version += 1
        return super().pop(*args)

    def popitem(self):
        self.version += 1
        return super().popitem()

    def clear(self):
        self.version += 1
        super().clear()

    def setdefault(self, key, default=None):
        self.version += 1
        return super().setdefault(key, default)


class _Layout:
    """A param group's blocks, and what they were built from (to tell when they are stale)."""

    def __init__(self, group, blocks, key, version):
        self.group = group
        self.params = list(group["params"])
        self.blocks = blocks
        self.key = key
        self.version = version

    def current(self, group, key, state) -> bool:
        params = group["params"]
        if not (group is self.group and key == self.key and len(params) == len(self.params)
                and all(map(operator.is_, params, self.params))):
            return False
        if state.version != self.version:
            if not all(block.current(state) for block in self.blocks):
                return False
            self.version = state.version
        return True


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` that updates parameters with an adamgen-generated kernel.

    ``variant``: a built-in name (``"adamw"``), a path to a spec file, or a ``Spec``. Keyword arguments are the
    variant's hyperparameters under torch's names (``betas=(b1, b2)`` stands for the spec's ``beta1``, ``beta2``; the
    spec names are accepted too) and its options (``amsgrad``, ``decoupled_weight_decay``, ...), all of which can be
    set per param group. ``flat``: update each param group with one kernel call over flat buffers (default: on for
    elementwise variants; ``False`` makes one call per tensor).
    """

    # GradScaler: like torch.optim's non-fused optimizers, this one leaves the gradients' scale to GradScaler, which
    # unscales them in place and skips step() when one holds an inf or NaN (the kernels take no gradient scale, so
    # torch's fused protocol, grad_scale and found_inf handed to step(), would cost the same pass over the gradients).
    _step_supports_amp_scaling = False

    def __init__(self, params, variant="adamw", *, flat: bool | None = None, **hyperparameters):
        if isinstance(variant, str) and variant in BUILTINS:
            option_names = set(BUILTINS[variant])
        else:
            option_names = set()
        option_names |= {name for name in hyperparameters if name in OPTIONS}
        options = {name: bool(hyperparameters.pop(name, False)) for name in sorted(option_names)}
        base = load(variant, "cpu", **{name: True for name, on in options.items() if on})
        self._variant = variant
        self._option_names = tuple(sorted(option_names))
        self._flat = flat
        self._modules = {}
        self._init_values = {}
        self._layouts = {}
        self._hyperparameter_plans = {}
        self._names = torch_names(base.HYPERPARAMETERS)
        defaults = dict(self._names)
        given = translate(hyperparameters, "adamgen.torch.Optimizer()")
        # -- hyperparameter checks (adamgen/torch/hyperparameters.py): the torch twin's, then torch.optim's switches
        check_torch_arguments(variant if isinstance(variant, str) else None, given)
        check_switches(given, "adamgen.torch.Optimizer")
        for name in IGNORED_SWITCHES + REFUSED_SWITCHES:
            given.pop(name, None)
        # --
        if "decouple_lr" in option_names:  # as optimi: max_lr defaults to the (group's) initial lr, see add_param_group
            defaults["max_lr"] = None
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise TypeError(f"adamgen.torch.Optimizer: unknown hyperparameter(s) {', '.join(unknown)} for variant "
                            f"{base.VARIANT}; it takes {', '.join(defaults)} and options "
                            f"{', '.join(sorted(option_names)) or 'none'}")
        names = dict(defaults)
        defaults.update(given)
        check_values(defaults, names)  # before params are looked at, as torch
        defaults.update(options)
        super().__init__(params, defaults)
        self.state = _StateDict(dict, self.state)

    # -- configuration -----------------------------------------------------------------------------------------------

    def add_param_group(self, param_group):
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        param_group = translate(param_group, "add_param_group")
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
                    _check_param(p, f"adamgen.torch.Optimizer: parameter {k} of group {len(self.param_groups)}")
        # -- hyperparameter checks (adamgen/torch/hyperparameters.py)
        where = f"adamgen.torch.Optimizer: param group {len(self.param_groups)}"
        check_switches(param_group, where)
        check_values(param_group, self.defaults, where)
        # --
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if "max_lr" in group and group["max_lr"] is None:
            group["max_lr"] = group["lr"]

    def _module(self, group, target):
        options = tuple(name for name in self._option_names if group.get(name, False))
        key = (target, options)
        module = self._modules.get(key)
        if module is None:
            module = self._modules[key] = load(self._variant, target, **dict.fromkeys(options, True))
            if options not in self._init_values:
                cpu = module if target == "cpu" else self._module(group, "cpu")[0]
                fresh = cpu.init(np.zeros(1, np.float64))
                self._init_values[options] = {name: float(fresh[name][0]) for name in cpu.STATES}
        return module, options

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

    def _layout(self, index, group, module, options):
        key = (options, module.STATES, tuple(module.SCALAR_STATES))
        entry = self._layouts.get(id(group))
        if entry is not None and entry.current(group, key, self.state):
            return entry
        where = f"adamgen.torch.Optimizer: group {index}"
        flat = (self._flat if self._flat is not None else True) and _elementwise(module)
        blocks, by_kind = [], {}
        for k, p in enumerate(group["params"]):
            _check_param(p, f"{where}, parameter {k}")
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        for params in by_kind.values():
            blocks.append(_Block(params, self.state, module, self._init_values[options], flat))
        for block in blocks:  # expose the new views for every parameter that has state
            for k, p in enumerate(block.params):
                if block.exposed[k]:
                    block._expose(self.state, k)
        entry = self._layouts[id(group)] = _Layout(group, blocks, key, self.state.version)
        return entry

    # -- torch.optim.Optimizer interface -----------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure=None):
        """One optimizer step over every parameter that has a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # -- the values a scheduler or user set in the param groups since: checked before anything is written
        for index, group in enumerate(self.param_groups):
            check_values(group, self.defaults, f"adamgen.torch.Optimizer.step: param group {index}")
        # --
        work = []
        # plan every call first, so that a bad gradient raises before anything is written
        for index, group in enumerate(self.param_groups):
            if not group["params"]:
                continue
            target = group["params"][0].device.type
            module, options = self._module(group, target if target in _TARGETS else "cpu")
            layout = self._layout(index, group, module, options)
            hyperparameters = None
            for block in layout.blocks:
                block_module = module if block.device.type == target else self._module(group, block.device.type)[0]
                runs = block.plan(self.state, f"adamgen.torch.Optimizer: group {index}")
                if runs:
                    hyperparameters = hyperparameters or self._hyperparameters(group, module)
                    work.append((block, block_module, hyperparameters, runs))
        for block, module, hyperparameters, runs in work:
            if block.cpu:
                block.step(module, hyperparameters, runs)
            else:
                with torch.cuda.device(block.device):
                    block.step(module, hyperparameters, runs)
        return loss

    def state_dict(self):
        """torch's layout; the 0-d ``step`` (and scalar states) are copied out of the flat counters, so a checkpoint
        holds standalone tensors as torch.optim's do."""
        state_dict = super().state_dict()
        if isinstance(state_dict, dict) and isinstance(state_dict.get("state"), dict):  # a post-hook may reshape it
            state_dict["state"] = _state.pack(state_dict["state"])
        return state_dict

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._layouts.clear()  # the next step lays the loaded state out again

    def __getstate__(self):
        state = super().__getstate__()
        state.update(_variant=self._variant, _option_names=self._option_names, _flat=self._flat, _names=self._names)
        return state

    def __setstate__(self, state):
        if "defaults" not in state:
            # load_state_dict hands the loaded state (cast to the parameters) and param groups over here, after its
            # hooks and before anything of the optimizer changes: the place to refuse a checkpoint that does not fit
            _state.check_loaded(state["state"], state["param_groups"], lambda group: self._module(group, "cpu")[0])
        super().__setstate__(state)
        if not isinstance(self.state, _StateDict):
            self.state = _StateDict(dict, self.state)
        for name, value in (("_modules", {}), ("_init_values", {}), ("_layouts", {}), ("_hyperparameter_plans", {})):
            if not hasattr(self, name):
                setattr(self, name, value)
        self._layouts.clear()

    def __repr__(self):
        return super().__repr__().replace(type(self).__name__, f"{type(self).__name__}[{self._variant}]", 1)


def _check_param(p, where):
    if p.layout != torch.strided:
        raise UnsupportedTensorError(f"{where} is a sparse tensor ({p.layout}); adamgen's kernels take dense tensors")
    if p.dtype not in _KERNEL_DTYPES:
        raise UnsupportedTensorError(f"{where} has dtype {p.dtype}; adamgen's kernels update float32 and float64 "
                                     "tensors only")
    if p.device.type not in _TARGETS:
        raise UnsupportedTensorError(f"{where} is on {p.device}; adamgen's kernels run on cpu and cuda")
    if not _is_dense(p):
        raise UnsupportedTensorError(f"{where} is not dense in memory (strides {p.stride()}); adamgen's kernels need "
                                     "every element once, in one block")


_CLASSES: dict = {}


def optimizer_class(variant="adamw", **defaults) -> type[Optimizer]:
    """An ``Optimizer`` subclass bound to ``variant`` and default keyword arguments (options such as ``amsgrad=True``,
    hyperparameters, ``flat``): ``cls(params, **hyperparameters)``, the constructor signature torch.optim classes have,
    for code that takes an optimizer class (``ZeroRedundancyOptimizer(optimizer_class=...)``). Equal arguments give the
    same class."""
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
    cls = type(f"Optimizer_{name}", (Optimizer,), {"__init__": __init__, "__module__": __name__,
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


Adam = _named("Adam", "adam")
AdamW = _named("AdamW", "adamw")
Adamax = _named("Adamax", "adamax")
NAdam = _named("NAdam", "nadam")
RAdam = _named("RAdam", "radam")
