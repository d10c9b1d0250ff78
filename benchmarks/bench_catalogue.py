#!/usr/bin/env python
"""Catalogue benchmark: one step of each catalogue variant against the best implementation a user can install here, and
each variant with reductions against its elementwise base.

    python benchmarks/bench_catalogue.py [--sizes 20,24] [--rounds 5] [--out bench-catalogue.json] [--only lion,came]

Peers, on CPU torch tensors viewing the same float32 data: optimi's Lion, Adan and StableAdamW, the official
adabelief-pytorch package, adam-atan2-pytorch, schedulefree, prodigyopt, dadaptation, sophia-opt, adam-mini,
torch.optim.Adafactor and came-pytorch (on a matrix of the same size) (timm cannot be imported without torchvision, which has
no CPU build here). Variants without an installable peer are timed for the base comparison only. Every implementation
runs in its own block (numba and torch each bring an OpenMP runtime; alternating them costs a switch per call), warmed
up first; a round times every implementation of one size once, and the reported figures are medians over the rounds of
same-round ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

import adamgen

# adamgen variant (name, options) -> the elementwise variant it extends, for "reductions within 1.5x of their base"
BASES = {"lamb": "adam", "stableadamw": "adamw", "mars": "adamw", "cadamw": "adamw", "clion": "lion", "clamb": "lamb",
         "prodigy": "adamw", "dadapt_adam": "adamw", "adam_mini": "adamw"}
VARIANTS = [("adabelief", {}), ("yogi", {}), ("qhadam", {}), ("laprop", {}), ("adan", {}), ("lion", {}), ("adopt", {}),
            ("ademamix", {}), ("adam_atan2", {}), ("adam", {}), ("adamw", {}), ("lamb", {}), ("stableadamw", {}),
            ("mars", {}), ("adamw", {"cautious": True}), ("lion", {"cautious": True}), ("lamb", {"cautious": True}),
            ("schedulefree_adamw", {}), ("prodigy", {}), ("dadapt_adam", {}), ("sophia", {}),
            ("adam_mini", {}), ("adafactor", {}), ("came", {})]
# Variants that reduce along rows and columns run on a square-ish matrix of the same element count (a vector would
# take their unfactored path).
MATRICES = {"adafactor", "came"}


def peers():
    """Peer optimizers by adamgen module name: a factory taking a list of parameters."""
    import torch

    found = {"adam": lambda p: torch.optim.Adam(p, fused=True), "adamw": lambda p: torch.optim.AdamW(p, fused=True)}
    try:
        import optimi
        found["lion"] = lambda p: optimi.Lion(p, lr=1e-4)
        found["adan"] = lambda p: optimi.Adan(p, lr=1e-3)
        found["stableadamw"] = lambda p: optimi.StableAdamW(p, lr=1e-3)
    except ImportError:
        pass
    try:
        import adam_atan2_pytorch
        found["adam_atan2"] = lambda p: adam_atan2_pytorch.AdamAtan2(p, lr=1e-3, betas=(0.9, 0.999))
    except ImportError:
        pass
    try:
        import schedulefree

        def schedule_free(p):
            optimizer = schedulefree.AdamWScheduleFree(p)
            optimizer.train()
            return optimizer
        found["schedulefree_adamw"] = schedule_free
    except ImportError:
        pass
    try:
        import prodigyopt
        found["prodigy"] = lambda p: prodigyopt.Prodigy(p, weight_decay=1e-2)
    except ImportError:
        pass
    try:
        import adam_mini
        found["adam_mini"] = lambda p: adam_mini.Adam_mini([("block", q) for q in p], verbose=False)  # one block
    except ImportError:
        pass
    try:
        import sophia_opt
        found["sophia"] = lambda p: sophia_opt.SophiaG(p)
    except ImportError:
        pass
    try:
        import dadaptation
        found["dadapt_adam"] = lambda p: dadaptation.DAdaptAdam(p, weight_decay=1e-2)
    except ImportError:
        pass
    if hasattr(torch.optim, "Adafactor"):
        found["adafactor"] = lambda p: torch.optim.Adafactor(p)
    try:
        import came_pytorch
        found["came"] = lambda p: came_pytorch.CAME(p, lr=2e-4)
    except ImportError:
        pass
    try:
        import adabelief_pytorch
        found["adabelief"] = lambda p: adabelief_pytorch.AdaBelief(p, rectify=False, print_change_log=False)
    except ImportError:
        pass
    return found


def timed(call, repeat: int) -> float:
    """Median seconds of `repeat` calls after three warm-up calls."""
    for _ in range(3):
        call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def shape_for(name: str, n: int) -> tuple:
    """A vector of n elements, or for a factored variant a matrix of n elements (rows <= columns)."""
    if name not in MATRICES:
        return (n,)
    rows = 1 << (n.bit_length() - 1) // 2
    return (rows, n // rows)


def one_round(n: int, repeat: int, make_peer) -> dict:
    import torch

    rng = np.random.default_rng(n)
    param = rng.standard_normal(n, dtype=np.float32)
    grad = rng.standard_normal(n, dtype=np.float32) * 0.01
    times = {}
    for name, options in VARIANTS:  # all numba work first
        module = adamgen.load(name, **options)
        p, g = param.copy().reshape(shape_for(name, n)), grad.reshape(shape_for(name, n))
        state = module.init(p)
        times[module.VARIANT] = timed(lambda: module.step(p, g, state), repeat)
    for name, factory in make_peer.items():  # then all torch work
        tensor = torch.from_numpy(param.copy().reshape(shape_for(name, n))).requires_grad_()
        tensor.grad = torch.from_numpy(grad.reshape(shape_for(name, n)))
        optimizer = factory([tensor])
        times[f"peer:{name}"] = timed(optimizer.step, repeat)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20,24", help="comma-separated log2 element counts (default 20,24)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="bench-catalogue.json")
    parser.add_argument("--only", default="", help="comma-separated variant names to time (default: all)")
    args = parser.parse_args()
    if args.only:
        VARIANTS[:] = [(name, options) for name, options in VARIANTS if name in args.only.split(",")]
    import numba
    import torch

    torch.set_num_threads(numba.get_num_threads())
    make_peer = {name: make for name, make in peers().items()
                 if not args.only or name in [adamgen.load(n, **o).VARIANT for n, o in VARIANTS]}
    results = {"machine": {"python": platform.python_version(), "numba": numba.__version__, "torch": torch.__version__,
                           "threads": numba.get_num_threads(), "processor": platform.processor()}, "sizes": {}}
    print(f"{'n':>5} {'variant':12s} {'adamgen ms':>10} {'peer ms':>9} {'x peer':>7} {'base':>8} {'/ base':>7}")
    for k in (int(s) for s in args.sizes.split(",")):
        n = 1 << k
        repeat = max(5, min(200, (1 << 26) // n))
        rounds = [one_round(n, repeat, make_peer) for _ in range(args.rounds)]
        medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        rows = {}
        for name in (key for key in medians if not key.startswith("peer:")):
            row = {"adamgen_s": medians[name]}
            if f"peer:{name}" in medians:
                row["peer_s"] = medians[f"peer:{name}"]
                row["speedup_vs_peer"] = statistics.median(r[f"peer:{name}"] / r[name] for r in rounds)
            if name in BASES:
                row["base"] = BASES[name]
                row["time_vs_base"] = statistics.median(r[name] / r[BASES[name]] for r in rounds)
            rows[name] = row
            print(f"2^{k:<3} {name:12s} {1e3 * row['adamgen_s']:10.3f} "
                  f"{1e3 * row['peer_s'] if 'peer_s' in row else float('nan'):9.3f} "
                  f"{row.get('speedup_vs_peer', float('nan')):7.2f} {row.get('base', ''):>8} "
                  f"{row.get('time_vs_base', float('nan')):7.2f}")
        results["sizes"][f"2^{k}"] = {"elements": n, "repeat": repeat, "rounds": args.rounds, "variants": rows}
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
