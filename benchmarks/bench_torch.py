#!/usr/bin/env python
"""torch benchmark: one optimizer step of adamgen.torch against torch.optim and installable peers, CPU.

    python benchmarks/bench_torch.py [--out bench-torch.json] [--rounds R] [--steps N] [--width D] [--small N]
                                     [--forms lamb,adafactor,...]

Problems (float32):
  model   a 198-tensor transformer-like model (width 280: ~2^24 parameters);
  small   N tensors (default 10,000) of 10 to 1,000 elements each.

Implementations, each timed in its own block (torch and numba each bring an OpenMP runtime; alternating them call by
call costs a switch each time, so blocks never interleave):
  adamgen              adamgen.torch.AdamW on the default zero_grad() path: every step brings freshly allocated
                       gradients (what zero_grad(set_to_none=True) then backward gives);
  adamgen_accumulated  the same with gradients accumulated in place (zero_grad(set_to_none=False));
  kernel               the generated module's step_tables on an address table built once: the floor that
                       adamgen.torch's per-step work (reading and checking every tensor) is measured against;
  torch_fused, torch_foreach   torch.optim.AdamW(fused=True) / (foreach=True).
Reduction variants on the model: adamgen.torch's lamb and stableadamw against the best installable peer:
  pytorch_optimizer.Lamb (foreach and per tensor) and optimi.StableAdamW (foreach and per tensor), when installed;
  lamb with clip_grad_norm (global gradient-norm clipping, one more pass) against pytorch_optimizer.Lamb(pre_norm=True);
  prodigy and dadapt_adam (a step size estimated over the param group) against prodigyopt.Prodigy and
  dadaptation.DAdaptAdam; adafactor and came (row and column reductions) against torch.optim.Adafactor (foreach and
  per tensor) and came_pytorch.CAME.

Every block is warmed up, then timed step by step; --rounds repeats all blocks (the order rotating). The headline
figures are medians over rounds of the ratios within each round (peer time / adamgen time: > 1 means adamgen is
faster), which a shared, noisy machine disturbs least. Everything goes to the JSON file.
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

TARGETS = {"model: torch_fused/adamgen": 1.25, "small: torch_fused/adamgen": 3.0, "model: wrapper overhead": 0.05,
           "lamb: best peer/adamgen": 3.0, "stableadamw: best peer/adamgen": 3.0, "prodigy: best peer/adamgen": 3.0,
           "dadapt_adam: best peer/adamgen": 3.0, "adafactor: best peer/adamgen": 3.0, "came: best peer/adamgen": 3.0}
HYPERPARAMETERS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}


def transformer_shapes(width: int, layers: int = 16, vocab: int = 4096, context: int = 512) -> list[tuple[int, ...]]:
    """Parameter shapes of a GPT-like model: embeddings, `layers` blocks of 12 tensors, a final norm and a head:
    198 tensors for 16 layers."""
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


def small_shapes(count: int, seed: int = 0) -> list[tuple[int, ...]]:
    return [(int(n),) for n in np.random.default_rng(seed).integers(10, 1001, count)]


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


def fresh_gradients(ps, grads):
    """What autograd does after zero_grad(set_to_none=True): new gradient tensors every step (two sets, alternating,
    so that allocating them is not timed)."""
    spare = [[g.clone() for g in grads] for _ in range(2)]
    turn = [0]

    def before():
        turn[0] ^= 1
        for p, g in zip(ps, spare[turn[0]]):
            p.grad = g
    return before


def block_adamgen(problem, variant, fresh, steps, warmup, **hyperparameters):
    ps = parameters_of(*problem)
    optimizer = adamgen.torch.Optimizer(ps, variant, **(hyperparameters or HYPERPARAMETERS))
    return time_block(optimizer.step, steps, warmup, fresh_gradients(ps, problem[1]) if fresh else None)


def block_kernel(problem, steps, warmup):
    """step_tables on the tensors' address table, built once: the kernels and their host code, nothing else."""
    ps = parameters_of(*problem)
    module = adamgen.load("adamw")
    states = [[torch.zeros_like(p) for _ in module.STATES] for p in ps]
    addresses = np.array([[p.data_ptr(), p.grad.data_ptr(), *(s.data_ptr() for s in state)]
                          for p, state in zip(ps, states)], np.int64)
    sizes = np.array([p.numel() for p in ps], np.int64)
    counters = np.zeros(len(ps))
    hyperparameters = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2}

    def step():
        counters[:] = module.step_tables(addresses, sizes, counters, {}, np.float32, **hyperparameters)[0]
    return time_block(step, steps, warmup)


def block_torch(problem, kind, steps, warmup):
    ps = parameters_of(*problem)
    optimizer = torch.optim.AdamW(ps, **HYPERPARAMETERS, **{kind: True})
    return time_block(optimizer.step, steps, warmup)


def block_peer(problem, make, steps, warmup):
    ps = parameters_of(*problem)
    optimizer = make(ps)
    return time_block(optimizer.step, steps, warmup)


# adamgen forms with reductions, by benchmark name: (variant, options and hyperparameters beyond lr and weight_decay)
REDUCTION_FORMS = {"lamb": ("lamb", {}), "stableadamw": ("stableadamw", {}),
                   "lamb_clip": ("lamb", {"clip_grad_norm": True, "max_grad_norm": 1.0}),
                   "prodigy": ("prodigy", {}), "dadapt_adam": ("dadapt_adam", {}),
                   "adafactor": ("adafactor", {}), "came": ("came", {})}


def reduction_peers() -> dict:
    """Installable peers of adamgen's reduction variants: name -> (REDUCTION_FORMS key, factory)."""
    peers = {}
    try:
        import pytorch_optimizer
        for foreach in (True, False):
            peers[f"pytorch_optimizer.Lamb(foreach={foreach})"] = ("lamb", lambda p, f=foreach: pytorch_optimizer.Lamb(
                p, lr=1e-3, weight_decay=1e-2, eps=1e-6, max_grad_norm=0.0, foreach=f))
            # global gradient-norm clipping before the step (its pre_norm; adamgen's clip_grad_norm option)
            peers[f"pytorch_optimizer.Lamb(pre_norm=True, foreach={foreach})"] = (
                "lamb_clip", lambda p, f=foreach: pytorch_optimizer.Lamb(
                    p, lr=1e-3, weight_decay=1e-2, eps=1e-6, max_grad_norm=1.0, pre_norm=True, foreach=f))
    except ImportError:
        print("pytorch-optimizer is not installed: no lamb peer (pip install pytorch-optimizer)")
    try:
        import optimi
        for foreach in (True, False):
            peers[f"optimi.StableAdamW(foreach={foreach})"] = ("stableadamw", lambda p, f=foreach: optimi.StableAdamW(
                p, lr=1e-3, weight_decay=1e-2, foreach=f))
    except ImportError:
        print("torch-optimi is not installed: no stableadamw peer (pip install torch-optimi)")
    try:
        import prodigyopt
        peers["prodigyopt.Prodigy"] = ("prodigy", lambda p: prodigyopt.Prodigy(p, lr=1e-3, weight_decay=1e-2))
    except ImportError:
        print("prodigyopt is not installed: no prodigy peer (pip install prodigyopt)")
    try:
        import dadaptation
        peers["dadaptation.DAdaptAdam"] = ("dadapt_adam", lambda p: dadaptation.DAdaptAdam(p, lr=1e-3,
                                                                                             weight_decay=1e-2))
    except ImportError:
        print("dadaptation is not installed: no dadapt_adam peer (pip install dadaptation)")
    if hasattr(torch.optim, "Adafactor"):
        for foreach in (True, False):
            peers[f"torch.optim.Adafactor(foreach={foreach})"] = ("adafactor", lambda p, f=foreach: torch.optim.Adafactor(
                p, lr=1e-3, weight_decay=1e-2, foreach=f))
    try:
        import came_pytorch
        peers["came_pytorch.CAME"] = ("came", lambda p: came_pytorch.CAME(p, lr=1e-3, weight_decay=1e-2))
    except ImportError:
        print("came-pytorch is not installed: no came peer (pip install came-pytorch)")
    return peers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-torch.json")
    parser.add_argument("--width", type=int, default=280, help="model width (280: ~2^24 parameters)")
    parser.add_argument("--small", type=int, default=10_000, help="number of small tensors")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-reductions", action="store_true")
    parser.add_argument("--forms", default="", help="comma-separated reduction forms to run (default: all of "
                        + ", ".join(REDUCTION_FORMS) + ")")
    args = parser.parse_args(argv)

    problems = {"model": make_problem(transformer_shapes(args.width)), "small": make_problem(small_shapes(args.small))}
    for name, (params, _) in problems.items():
        numel = sum(p.numel() for p in params)
        print(f"{name}: {len(params)} tensors, {numel} parameters (2^{np.log2(numel):.2f})", flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads", flush=True)

    blocks = {}
    for name, problem in problems.items():
        blocks[f"{name}: adamgen"] = lambda p=problem: block_adamgen(p, "adamw", True, args.steps, args.warmup)
        blocks[f"{name}: adamgen_accumulated"] = lambda p=problem: block_adamgen(p, "adamw", False, args.steps,
                                                                                 args.warmup)
        blocks[f"{name}: kernel"] = lambda p=problem: block_kernel(p, args.steps, args.warmup)
        for kind in ("fused", "foreach"):
            blocks[f"{name}: torch_{kind}"] = lambda p=problem, k=kind: block_torch(p, k, args.steps, args.warmup)
    peers = {} if args.skip_reductions else reduction_peers()
    if args.forms:
        peers = {peer: entry for peer, entry in peers.items() if entry[0] in args.forms.split(",")}
    for form in sorted({form for form, _ in peers.values()}):
        variant, extra = REDUCTION_FORMS[form]
        blocks[f"{form}: adamgen"] = lambda v=variant, e=extra: block_adamgen(
            problems["model"], v, True, args.steps, args.warmup, lr=1e-3, weight_decay=1e-2, **e)
    for peer, (variant, make) in peers.items():
        blocks[f"{variant}: {peer}"] = lambda m=make: block_peer(problems["model"], m, args.steps, args.warmup)

    per_round = {name: [] for name in blocks}
    names = list(blocks)
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for name in order:
            ms = statistics.median(blocks[name]()) * 1e3
            per_round[name].append(ms)
            print(f"  round {round_index} {name:45s} {ms:9.2f} ms", flush=True)

    def ratio(numerator, denominator):  # median over rounds of same-round ratios
        return statistics.median(a / b for a, b in zip(per_round[numerator], per_round[denominator]))

    ratios = {}
    for name in problems:
        for ours in ("adamgen", "adamgen_accumulated"):
            for peer in ("torch_fused", "torch_foreach"):
                ratios[f"{name}: {peer}/{ours}"] = ratio(f"{name}: {peer}", f"{name}: {ours}")
        ratios[f"{name}: wrapper overhead"] = ratio(f"{name}: adamgen", f"{name}: kernel") - 1
    for variant in sorted({variant for variant, _ in peers.values()}):
        mine = [peer for peer, (v, _) in peers.items() if v == variant]
        for peer in mine:
            ratios[f"{variant}: {peer}/adamgen"] = ratio(f"{variant}: {peer}", f"{variant}: adamgen")
        ratios[f"{variant}: best peer/adamgen"] = min(ratios[f"{variant}: {peer}/adamgen"] for peer in mine)
    meets = {}
    for key, target in TARGETS.items():
        if key in ratios:
            meets[key] = ratios[key] <= target if "overhead" in key else ratios[key] >= target
    result = {
        "problems": {name: {"tensors": len(p[0]), "parameters": int(sum(t.numel() for t in p[0]))}
                     for name, p in problems.items()},
        "median_ms": {name: statistics.median(values) for name, values in per_round.items()},
        "per_round_median_ms": per_round,
        "ratios_median_of_rounds": ratios,
        "targets": TARGETS,
        "meets_targets": meets,
        "settings": {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "numpy": np.__version__, "adamgen": adamgen.__version__,
                    "torch_threads": torch.get_num_threads()},
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps({"ratios_median_of_rounds": ratios, "meets_targets": meets}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
