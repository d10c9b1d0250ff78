"""Checks on the tensors an optimizer is given, and the arrays its kernels can take from them.

A kernel walks each tensor's elements in memory order, so a parameter, its gradient and its states must be dense
(every element once, no gaps) with equal strides. Tensors that are not, such as a strided view of a larger tensor or a
gradient laid out differently from its parameter, go through a staging copy in the parameter's layout that is written
back after the kernel. Distributed tensors (DTensor, FSDP2) are updated through their local shards.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import AdamgenError

KERNEL_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
# the dtypes a state may have beside its parameter's: float64 parameters keep float64 states (the kernels compute in
# float64); the others any of these (the kernels compute in float32)
STATE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class UnsupportedTensorError(AdamgenError, TypeError):
    """A parameter or gradient the generated kernels cannot update: not a float dtype they take, sparse, on another
    device."""


def state_dtypes(dtype) -> tuple:
    """The dtypes a state of a parameter of ``dtype`` may have."""
    return (torch.float64,) if dtype == torch.float64 else STATE_DTYPES


def state_dtype_of(p, module, state_dtype=None):
    """The dtype of a new state tensor of ``p`` (other than a remainder, int16): ``state_dtype`` if given and the
    parameter is not float64, else float32 for master weights (their states follow the float32 values), else the
    parameter's own."""
    if state_dtype is not None and p.dtype != torch.float64:
        return state_dtype
    return torch.float32 if module.REMAINDERS else p.dtype


def blocks_of(numel, block_size):
    """How many blocks of ``block_size`` elements a tensor of ``numel`` elements has (one, empty, for an empty
    tensor); ``numel`` may be a NumPy array of element counts."""
    return np.maximum(numel // block_size, 1)


def local(tensor):
    """The tensor a kernel updates: a DTensor's local shard, any other tensor itself (detached: kernels run outside
    autograd)."""
    to_local = getattr(tensor, "to_local", None)
    if to_local is not None:
        tensor = to_local()
    return tensor.detach() if tensor.requires_grad else tensor


def is_dense(tensor) -> bool:
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


def check_param(p, where: str) -> None:
    """Refuse, before anything is written, a parameter no kernel can update."""
    if p.layout != torch.strided:
        raise UnsupportedTensorError(f"{where} is a sparse tensor ({p.layout}); adamgen's kernels take dense tensors")
    if p.dtype not in KERNEL_DTYPES:
        raise UnsupportedTensorError(f"{where} has dtype {p.dtype}; adamgen's kernels update float64, float32, "
                                     "bfloat16 and float16 tensors only")


def check_grad(p, g, where: str) -> None:
    if g.layout != torch.strided:
        raise UnsupportedTensorError(f"{where} has a sparse gradient ({g.layout}); adamgen's kernels take dense "
                                     "gradients (torch.optim.SparseAdam handles sparse ones)")
    if g.dtype != p.dtype or g.shape != p.shape or g.device != p.device:
        raise UnsupportedTensorError(f"{where} is {p.dtype} {tuple(p.shape)} on {p.device} but its gradient is "
                                     f"{g.dtype} {tuple(g.shape)} on {g.device}")


def check_state(p, value, where: str, name: str, remainder: bool = False) -> None:
    """A state tensor must be a tensor like its parameter (as torch.optim's own states are), in its dtype or another
    one of ``state_dtypes(p.dtype)``; a ``remainder`` (master_weights) int16."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where}: state {name!r} must be a tensor like the parameter, got {type(value).__name__}")
    dtypes = (torch.int16,) if remainder else (p.dtype, *state_dtypes(p.dtype))
    if value.shape != p.shape or value.dtype not in dtypes or value.device != p.device:
        raise ValueError(f"{where}: state {name!r} is {value.dtype} {tuple(value.shape)} on {value.device}, the "
                         f"parameter is {p.dtype} {tuple(p.shape)} on {p.device}")


def check_placed_like(p, value, where: str, name: str, error=ValueError) -> None:
    """A DTensor parameter's gradient and states must be DTensors placed like it on the same mesh, and a plain
    parameter's plain tensors: the kernel pairs their local shards element by element, so a full tensor beside a shard
    (a state loaded from a checkpoint without torch.distributed.checkpoint) would pair the shard with the wrong
    elements."""
    placements, value_placements = getattr(p, "placements", None), getattr(value, "placements", None)
    if placements is None and value_placements is None:
        return
    if placements is None or value_placements is None:
        raise error(f"{where}: the parameter is a {type(p).__name__} but its {name} is a {type(value).__name__}; "
                    "a DTensor parameter's gradient and states must be DTensors placed like it")
    if tuple(placements) != tuple(value_placements) or p.device_mesh != value.device_mesh:
        raise error(f"{where}: its {name} is a DTensor placed {tuple(value_placements)} on "
                    f"{value.device_mesh}, the parameter {tuple(placements)} on {p.device_mesh}")


def check_whole(p, where: str, variant: str) -> None:
    """A variant that reduces over each tensor (a norm, a mean) must see each parameter whole: refuse a DTensor sharded
    over more than one process and an FSDP1 flat parameter (pieces of several parameters), whose reductions would
    cover only the piece this process holds."""
    if getattr(p, "_is_flat_param", False):
        raise UnsupportedTensorError(
            f"{where} is an FSDP flat parameter (pieces of several parameters); {variant} reduces over each parameter "
            "and needs it whole: use a variant without reductions, or a wrapper that leaves each parameter whole "
            "(DistributedDataParallel, ZeroRedundancyOptimizer)")
    placements = getattr(p, "placements", None)
    if placements is not None and any(not placement.is_replicate() and p.device_mesh.size(dim) > 1
                                      for dim, placement in enumerate(placements)):
        raise UnsupportedTensorError(
            f"{where} is a DTensor sharded over several processes ({tuple(placements)} on {p.device_mesh}); "
            f"{variant} reduces over each parameter and needs it whole: use a variant without reductions, or a "
            "wrapper that leaves each parameter whole (DistributedDataParallel, ZeroRedundancyOptimizer)")


def same_layout(a, b) -> bool:
    """Whether two tensors of one shape walk their elements in the same order through memory."""
    return a.stride() == b.stride() or a.numel() <= 1 or all(
        size == 1 or sa == sb for size, sa, sb in zip(a.shape, a.stride(), b.stride()))


class Staged:
    """A kernel-ready copy of a tensor that is not (not dense, or laid out unlike its parameter): contiguous in the
    parameter's memory order. ``written`` copies are written back into the original after the kernel."""

    def __init__(self, original, layout_of, written: bool):
        self.original = original
        self.written = written
        self.copy = torch.empty_like(layout_of, memory_format=torch.preserve_format) if is_dense(layout_of) \
            else torch.empty(layout_of.shape, dtype=layout_of.dtype, device=layout_of.device)
        self.copy.copy_(original)

    def write_back(self) -> None:
        if self.written:
            self.original.copy_(self.copy)
