#!/usr/bin/env python
"""torch benchmark: one optimizer step of a 200-tensor transformer-like model (~2^24 float32 parameters).

    python benchmarks/bench_torch.py [--out bench-torch.json] [--steps N] [--rounds R] [--variant adamw] [--width D]

Implementations, each timed in its own block (torch and numba each bring an OpenMP runtime; alternating them call by
call costs a switch each time, so blocks never interleave):

  adamgen_flat        adamgen.torch.Optimizer (flat=True, the default): one kernel call for the whole group, gradients
                      in the optimizer's flat buffer (they accumulate in place, e.g. zero_grad(set_to_none=False));
  adamgen_flat_fresh  the same optimizer when every step brings freshly allocated gradients (zero_grad(set_to_none=True)
                      then backward): the parameters and states stay flat, each tensor is its own call;
  adamgen_per_tensor  adamgen.torch.Optimizer(flat=False): one kernel call per tensor;
  kernel              the generated module's step() called once directly on the flat numpy buffers: the floor that
                      adamgen_flat's wrapper overhead is measured against;
  torch_fused         torch.optim.AdamW(fused=True);
  torch_foreach       torch.optim.AdamW(foreach=True);
  torch_fused_numpy_memory  torch fused with parameters and gradients moved into numpy-allocated memory, which (unlike
                      torch's allocator) asks for transparent huge pages, as adamgen's flat buffers do: how much of
                      the difference is memory placement rather than the kernel.

Every block is warmed up, then timed step by step; --rounds repeats all blocks (the order rotating) and each figure is
the median over all samples. Ratios are same-run: torch_time / adamgen_time (> 1: adamgen is faster), and the wrapper
overhead (adamgen_flat - kernel) / kernel; the headline figures (`*_median_of_rounds`, used for `meets_targets`) are
medians over rounds of the ratios within each round, which a shared, noisy machine disturbs least. Everything goes to
the JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

import adamgen
import adamgen.torch

TARGETS = {"speedup_vs_fused": 1.3, "wrapper_overhead": 0.05}
HYPERPARAMETERS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}


def transformer_shapes(width: int, layers: int = 16, vocab: int = 4096, context: int = 512) -> list[tuple[int, ...]]:
    """Parameter shapes of a GPT-like model: embeddings, `layers` blocks of 12 tensors, a final norm: 200 tensors."""
    shapes = [(vocab, width), (context, width)]
    for _ in range(layers):
        shapes += [(width,), (width,),                              # norm 1
                   (3 * width, width), (3 * width,),                # qkv
                   (width, width), (width,),                        # attention out
                   (width,), (width,),                              # norm 2
                   (4 * width, width), (4 * width,),                # mlp in
                   (width, 4 * width), (width,)]                    # mlp out
    shapes += [(width,), (width,), (vocab, width), (vocab,)]       # final norm, untied head
    return shapes


def make_problem(shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    params = [torch.randn(shape, generator=generator) * 0.02 for shape in shapes]
    grads = [torch.randn(shape, generator=generator) * 1e-3 for shape in shapes]
    return params, grads


def parameters_of(params, grads):
    """Fresh nn.Parameters (own storage) with fresh gradients, copies of the given data."""
    result = []
    for value, grad in zip(params, grads):
        p = torch.nn.Parameter(value.clone())
        p.grad = grad.clone()
        result.append(p)
    return result


def time_block(step, steps, warmup, before=None):
    for _ in range(warmup):
        if before:
            before()
        step()
    samples = []
    for _ in range(steps):
        if before:
            before()
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    return samples


def block_adamgen(variant, flat, fresh, params, grads, steps, warmup):
    ps = parameters_of(params, grads)
    optimizer = adamgen.torch.Optimizer(ps, variant, flat=flat, **HYPERPARAMETERS)
    before = None
    if fresh:
        spare = [[g.clone() for g in grads] for _ in range(2)]
        turn = [0]

        def before():  # what autograd does after zero_grad(set_to_none=True): new gradient tensors
            turn[0] ^= 1
            for p, g in zip(ps, spare[turn[0]]):
                p.grad = g
    samples = time_block(optimizer.step, steps, warmup, before)
    calls = count_calls(optimizer, before)
    return samples, calls


def count_calls(optimizer, before):
    """Kernel calls per optimizer step, counted on one extra step."""
    module = next(iter(optimizer._modules.values()))
    original, counter = module.step, [0]

    def counting(*args, **kwargs):
        counter[0] += 1
        return original(*args, **kwargs)

    module.step = counting
    try:
        if before:
            before()
        optimizer.step()
    finally:
        module.step = original
    return counter[0]


def block_kernel(variant, params, grads, steps, warmup):
    module = adamgen.load(variant)
    param = np.concatenate([p.numpy().ravel() for p in params])  # numpy-allocated, as adamgen's flat buffers are
    grad = np.concatenate([g.numpy().ravel() for g in grads])
    state = module.init(param)
    hyperparameters = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2}
    return time_block(lambda: module.step(param, grad, state, **hyperparameters), steps, warmup)


def block_torch(kind, params, grads, steps, warmup, numpy_memory=False):
    ps = parameters_of(params, grads)
    if numpy_memory:  # parameters and gradients in numpy-allocated (huge-page) memory; torch still allocates the states
        for p in ps:
            p.data = torch.from_numpy(p.data.numpy().copy())
            p.grad = torch.from_numpy(p.grad.numpy().copy())
    optimizer = torch.optim.AdamW(ps, **HYPERPARAMETERS, **{kind: True})
    return time_block(optimizer.step, steps, warmup)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-torch.json")
    parser.add_argument("--variant", default="adamw", help="an adamgen variant equivalent to torch.optim.AdamW")
    parser.add_argument("--width", type=int, default=280, help="model width (280: ~2^24 parameters)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    shapes = transformer_shapes(args.width)
    params, grads = make_problem(shapes)
    numel = sum(p.numel() for p in params)
    print(f"{len(shapes)} tensors, {numel} parameters (2^{np.log2(numel):.2f}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads", flush=True)

    blocks = {
        "kernel": lambda: (block_kernel(args.variant, params, grads, args.steps, args.warmup), 1),
        "adamgen_flat": lambda: block_adamgen(args.variant, True, False, params, grads, args.steps, args.warmup),
        "adamgen_flat_fresh": lambda: block_adamgen(args.variant, True, True, params, grads, args.steps, args.warmup),
        "adamgen_per_tensor": lambda: block_adamgen(args.variant, False, False, params, grads, args.steps,
                                                    args.warmup),
        "torch_fused": lambda: (block_torch("fused", params, grads, args.steps, args.warmup), None),
        "torch_foreach": lambda: (block_torch("foreach", params, grads, args.steps, args.warmup), None),
        "torch_fused_numpy_memory": lambda: (block_torch("fused", params, grads, args.steps, args.warmup, True), None),
    }
    samples = {name: [] for name in blocks}
    per_round = {name: [] for name in blocks}
    calls = {}
    names = list(blocks)
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for name in order:
            times, count = blocks[name]()
            samples[name] += times
            per_round[name].append(statistics.median(times) * 1e3)
            calls[name] = count
            print(f"  round {round_index} {name:20s} {statistics.median(times) * 1e3:8.2f} ms", flush=True)

    median = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    ratios = {
        f"{torch_name}/{ours}": median[torch_name] / median[ours]
        for torch_name in ("torch_fused", "torch_foreach", "torch_fused_numpy_memory")
        for ours in ("adamgen_flat", "adamgen_flat_fresh", "adamgen_per_tensor", "kernel")
    }
    # The machine is shared: a block that ran while something else held a core or the memory bus is slow as a whole.
    # Ratios within one round (blocks minutes apart at most) and their median over rounds resist that best.
    round_ratios = {
        key: statistics.median(per_round[key.split("/")[0]][r] / per_round[key.split("/")[1]][r]
                               for r in range(args.rounds))
        for key in ratios
    }
    round_overhead = {
        name: statistics.median(per_round[name][r] / per_round["kernel"][r] - 1 for r in range(args.rounds))
        for name in ("adamgen_flat", "adamgen_flat_fresh", "adamgen_per_tensor")
    }
    overhead = {
        "adamgen_flat": (median["adamgen_flat"] - median["kernel"]) / median["kernel"],
        "adamgen_flat_fresh": (median["adamgen_flat_fresh"] - median["kernel"]) / median["kernel"],
        "adamgen_per_tensor": (median["adamgen_per_tensor"] - median["kernel"]) / median["kernel"],
    }
    result = {
        "model": {"tensors": len(shapes), "parameters": numel, "width": args.width, "dtype": "float32"},
        "variant": args.variant,
        "median_ms": median,
        "per_round_median_ms": per_round,
        "kernel_calls_per_step": calls,
        "speedup": ratios,
        "speedup_median_of_rounds": round_ratios,
        "wrapper_overhead_vs_kernel": overhead,
        "wrapper_overhead_median_of_rounds": round_overhead,
        "targets": TARGETS,
        "meets_targets": {
            "speedup_vs_fused": round_ratios["torch_fused/adamgen_flat"] >= TARGETS["speedup_vs_fused"],
            "wrapper_overhead": round_overhead["adamgen_flat"] <= TARGETS["wrapper_overhead"],
        },
        "settings": {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "numpy": np.__version__, "adamgen": adamgen.__version__,
                    "torch_threads": torch.get_num_threads()},
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps({"median_ms": median, "speedup_median_of_rounds": round_ratios,
                      "wrapper_overhead_median_of_rounds": round_overhead, "kernel_calls_per_step": calls,
                      "meets_targets": result["meets_targets"]}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
