#!/usr/bin/env python
"""CPU benchmark of 16-bit storage: one AdamW step on 2**k elements per storage layout, against torch's fused kernel.

    python benchmarks/bench_low_precision.py [--log2 24] [--rounds 5] [--repeat 5] [--out bench-low-precision.json]

Layouts (parameter and gradient / states), with the bytes each step moves per parameter (reads and writes):
  float32            float32 / float32     28
  float32+bfloat16   float32 / bfloat16    20  (fp32 master parameters, bf16 moments)
  bfloat16           bfloat16 / bfloat16   14
  float16            float16 / float16     14
  bfloat16+kahan     bfloat16 / bfloat16   18  (kahan=True: a bfloat16 compensation state read and written)
  bfloat16+stochastic bfloat16 / bfloat16  14  (stochastic_rounding=True: random bits hashed per element)
  bfloat16+master    bfloat16 / float32    26  (master_weights=True: an int16 remainder read and written; the
                                               float32 trajectory, compared with torch's fused float32 step)

adamgen runs the generated module's `step` on NumPy arrays (bfloat16 as int16 bits); torch runs
`torch.optim.AdamW(fused=True)` on tensors of the same layout where it has one (float32, bfloat16, float16: states in the
parameter's dtype), and bfloat16+kahan against `optimi.AdamW(kahan_sum=True)` when torch-optimi is installed. numba's and torch's OpenMP runtimes are never interleaved within a block: a round times every adamgen
layout, then every torch one (alternating which goes first), each warmed up and timed `--repeat` times; the result is
the median over all rounds. Ratios are taken within the run: adamgen float32 time / adamgen layout time (the gain of
fewer bytes) and torch fused time / adamgen time for the same layout. Everything goes to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

import adamgen

LAYOUTS = {  # name -> (parameter and gradient dtype, state dtype or None for the parameter's, bytes per parameter)
    "float32": (torch.float32, None, 28),
    "float32+bfloat16": (torch.float32, torch.bfloat16, 20),
    "bfloat16": (torch.bfloat16, None, 14),
    "float16": (torch.float16, None, 14),
    "bfloat16+kahan": (torch.bfloat16, None, 18),
    "bfloat16+stochastic": (torch.bfloat16, None, 14),
    "bfloat16+master": (torch.bfloat16, None, 26),
}
# layouts that torch has no path for, compared with the torch layout of the same trajectory
TORCH_TWINS = {"bfloat16+master": "float32"}
TORCH_LAYOUTS = ("float32", "bfloat16", "float16", "bfloat16+kahan")  # torch fused AdamW's, and optimi's Kahan one
HYPERPARAMETERS = {"lr": 1e-3, "weight_decay": 1e-2}


def numpy_view(tensor):
    return (tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor).numpy()


def adamgen_step(layout, n, seed=0):
    """A closure running one adamgen step of ``layout`` on fresh arrays."""
    dtype, state_dtype, _ = LAYOUTS[layout]
    module = adamgen.load("adamw", target="cpu", kahan=layout.endswith("+kahan"),
                          stochastic_rounding=layout.endswith("+stochastic"), master_weights=layout.endswith("+master"))
    generator = torch.Generator().manual_seed(seed)
    param = numpy_view(torch.randn(n, generator=generator).to(dtype))
    grad = numpy_view((torch.randn(n, generator=generator) * 1e-2).to(dtype))
    state = module.init(param, None if state_dtype is None else str(state_dtype).removeprefix("torch."))
    return lambda: module.step(param, grad, state, **HYPERPARAMETERS)


def torch_step(layout, n, seed=0):
    dtype = LAYOUTS[layout][0]
    generator = torch.Generator().manual_seed(seed)
    param = torch.randn(n, generator=generator).to(dtype).requires_grad_(True)
    param.grad = (torch.randn(n, generator=generator) * 1e-2).to(dtype)
    if layout.endswith("+kahan"):
        import optimi

        return optimi.AdamW([param], kahan_sum=True, **HYPERPARAMETERS).step
    return torch.optim.AdamW([param], fused=True, **HYPERPARAMETERS).step


def timed(step, repeat):
    for _ in range(2):
        step()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log2", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="bench-low-precision.json")
    args = parser.parse_args()
    n = 1 << args.log2
    ours = {layout: adamgen_step(layout, n) for layout in LAYOUTS}
    theirs = {}
    for layout in TORCH_LAYOUTS:
        try:
            theirs[layout] = torch_step(layout, n)
        except ImportError:  # torch-optimi is not installed
            pass
    samples = {f"adamgen {layout}": [] for layout in LAYOUTS} | {f"torch fused {layout}": [] for layout in theirs}
    for round_ in range(args.rounds):
        blocks = [("adamgen", ours), ("torch fused", theirs)]
        for label, steps in blocks if round_ % 2 == 0 else blocks[::-1]:
            for layout, step in steps.items():
                samples[f"{label} {layout}"] += timed(step, args.repeat)
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    median = {name: statistics.median(values) for name, values in samples.items()}
    rows = {}
    for layout, (_, _, nbytes) in LAYOUTS.items():
        time_ = median[f"adamgen {layout}"]
        row = {"bytes_per_parameter": nbytes, "adamgen_ms": 1e3 * time_, "adamgen_GBps": nbytes * n / time_ / 1e9,
               "speedup_vs_adamgen_float32": median["adamgen float32"] / time_}
        twin = TORCH_TWINS.get(layout, layout)
        if twin in theirs:
            row["torch_fused_ms"] = 1e3 * median[f"torch fused {twin}"]
            row["speedup_vs_torch_fused"] = median[f"torch fused {twin}"] / time_
        rows[layout] = row
    report = {"elements": n, "rows": rows, "samples_s": samples, "machine": platform.processor() or platform.machine(),
              "threads": {"numba": __import__("numba").get_num_threads(), "torch": torch.get_num_threads()},
              "versions": {"torch": torch.__version__, "numpy": np.__version__, "adamgen": adamgen.__version__}}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"{'layout':19} {'bytes':>5} {'adamgen ms':>11} {'GB/s':>6} {'vs f32':>7} {'torch ms':>9} {'vs torch':>8}")
    for layout, row in rows.items():
        print(f"{layout:19} {row['bytes_per_parameter']:5d} {row['adamgen_ms']:11.2f} {row['adamgen_GBps']:6.1f} "
              f"{row['speedup_vs_adamgen_float32']:6.2f}x {row.get('torch_fused_ms', float('nan')):9.2f} "
              f"{row.get('speedup_vs_torch_fused', float('nan')):7.2f}x")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
