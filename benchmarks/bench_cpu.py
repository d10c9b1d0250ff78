#!/usr/bin/env python
"""CPU benchmark: one optimizer step of adamgen's generated `adam` and `adamw` against torch.optim and a memory ceiling.

    python benchmarks/bench_cpu.py [--sizes 16,20,24] [--out bench-cpu.json] [--repeat N] [--rounds R] [--threads T]

For every size 2**k (float32 elements) it times, each in its own block (numba and torch each bring an OpenMP runtime and
alternating them costs a switch per call, so the two are never interleaved inside a block):

  adamgen    the generated module's full `step()` call, Python wrapper included (what a user pays);
  ceiling    a numba prange kernel with Adam's access pattern (read param, grad, exp_avg, exp_avg_sq; write param,
             exp_avg, exp_avg_sq) and trivial arithmetic: the bandwidth this process can reach here and now;
  fused      torch.optim.Adam / AdamW(fused=True) on CPU tensors of the same data;
  foreach    torch.optim.Adam / AdamW(foreach=True).

Everything is compiled and first-touched before timing; each block is warmed up again (OpenMP wake-up after the other
runtime ran), then timed call by call. A round times every implementation of one size once, numba blocks together and
torch blocks together, alternating which runtime goes first. Rounds during which other processes kept more than
BUSY_LIMIT CPUs busy (from /proc/stat) are discarded and rerun. The reported time is the median over every sample of the
`--rounds` kept rounds; the per-round ratios show the spread.
Effective bandwidth counts 7 * 4 * n bytes per step. Ratios: adamgen / ceiling as a fraction of the ceiling's bandwidth,
and speedups torch_time / adamgen_time.

Unless `--no-extras` is given it also measures (at fixed sizes, whatever `--sizes` says): the `step()` wrapper's
overhead against calling the kernel directly (2^12, 2^16, 2^24), the serial against the parallel kernel around
PARALLEL_THRESHOLD (2^12 ... 2^18), and radam against adam (2^20, 2^24; radam's kernel branches on `rectified`).

Reading the numbers: the ceiling is whatever the memory level holding the arrays delivers. 2^16 elements (1.75 MB
moved per step) sit in L2 and 2^20 (16 MiB of arrays) in L3 on many CPUs, so there the ceiling is a cache bandwidth
that a kernel with a square root and a division per element may not reach; 2^24 (256 MiB) streams from DRAM.

Everything (raw medians, per-round medians, ratios, machine and library information) goes to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import numba
import torch

import adamgen

VARIANTS = ("adam", "adamw")
TORCH_CLASSES = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
BYTES_PER_ELEMENT = 7 * 4  # read param, grad, exp_avg, exp_avg_sq; write param, exp_avg, exp_avg_sq; float32
THRESHOLD_SIZES = (12, 13, 14, 15, 16, 18)
TARGETS = {  # from the issue: fraction of ceiling at every size, speedup over torch fused at given sizes
    "fraction_of_ceiling": 0.95,
    "speedup_vs_fused": {20: 1.7, 24: 1.0},
}


@numba.njit(parallel=True, error_model="numpy")
def ceiling_kernel(param, grad, exp_avg, exp_avg_sq, a, b, c):
    """Adam's memory traffic with one or two multiply-adds per store: 4 float32 loads, 3 float32 stores per element."""
    for i in numba.prange(param.shape[0]):
        p = param[i]
        g = grad[i]
        m = exp_avg[i]
        v = exp_avg_sq[i]
        exp_avg[i] = a * m + b * g
        exp_avg_sq[i] = a * v + b * (g * g)
        param[i] = p - c * m


# -------------------------------------------------------------------------------------------------------------- timing


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds():
    """(busy CPU seconds of the whole machine, CPU seconds of this process), or None where /proc/stat is unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    busy = sum(fields[:8]) - idle - steal
    own = os.times()
    return busy / _TICK, own.user + own.system


BUSY_LIMIT = 0.3  # CPUs kept busy by other processes during a round above which the round is discarded


def time_calls(fn, repeat=None, block_s=0.15, warmup_s=0.02, warmup_calls=3):
    """Seconds per call of `fn`, each call timed alone, after at least `warmup_calls` calls and `warmup_s` s of warm-up.

    `repeat` samples, or by default as many as fill about `block_s` seconds (at least 15).
    """
    start = time.perf_counter()
    calls = 0
    while calls < warmup_calls or time.perf_counter() - start < warmup_s:
        fn()
        calls += 1
    if repeat is None:
        per_call = (time.perf_counter() - start) / calls
        repeat = max(15, int(block_s / per_call))
    clock = time.perf_counter_ns
    raw = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        raw.append(clock() - t0)
    return [s * 1e-9 for s in raw]


def measure(groups, repeat, rounds, log=None, label=""):
    """Time every case of `groups` (a list of {key: fn}; keys of one group share a runtime) in `rounds` kept rounds.

    A round times each case once, one block after another, group after group (the group order alternates between
    rounds, so no runtime always goes first); cases of different groups are never interleaved inside a block.
    A round during which other processes kept more than BUSY_LIMIT CPUs busy is discarded and run again (at most
    3 * rounds attempts; then the least disturbed rounds are kept): on a machine with as many threads as cores, one
    busy core stalls each parallel region until the scheduler gives the thread back, so such a round measures the
    neighbours. Returns ({key: [samples of each kept round]}, info about discarded rounds).
    """
    attempts = []
    for attempt in range(3 * rounds):
        order = groups if attempt % 2 == 0 else groups[::-1]
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        result = {key: time_calls(fn, repeat) for group in order for key, fn in group.items()}
        cpu1, wall = _cpu_seconds(), time.perf_counter() - wall0
        foreign = (max(0.0, (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1])) / wall) if cpu0 and cpu1 else 0.0
        attempts.append((foreign, result))
        if foreign > BUSY_LIMIT and log:
            log(f"  {label}: round discarded, other processes used {foreign:.2f} CPUs")
        if sum(f <= BUSY_LIMIT for f, _ in attempts) >= rounds:
            break
        if foreign > BUSY_LIMIT:
            time.sleep(1.0)
    quiet = [i for i, (f, _) in enumerate(attempts) if f <= BUSY_LIMIT]
    busy = sorted((i for i, (f, _) in enumerate(attempts) if f > BUSY_LIMIT), key=lambda i: attempts[i][0])
    kept = sorted((quiet + busy)[:rounds])
    keys = [key for group in groups for key in group]
    samples = {key: [attempts[i][1][key] for i in kept] for key in keys}
    info = {"rounds_run": len(attempts), "rounds_kept": len(kept),
            "foreign_cpus_kept_max": max(attempts[i][0] for i in kept),
            "foreign_cpus_all": [round(f, 3) for f, _ in attempts]}
    return samples, info


def summary(samples_by_round):
    """Median over all samples, plus per-round medians and quartiles, in seconds."""
    flat = sorted(s for samples in samples_by_round for s in samples)
    q = statistics.quantiles(flat, n=4) if len(flat) > 1 else [flat[0]] * 3
    return {
        "median_s": statistics.median(flat),
        "p25_s": q[0],
        "p75_s": q[2],
        "min_s": flat[0],
        "round_medians_s": [statistics.median(samples) for samples in samples_by_round],
        "samples": len(flat),
    }


# ------------------------------------------------------------------------------------------------------------- set-ups


class Buffers:
    """The four float32 arrays of one size. Every implementation of that size updates these same arrays in place
    (torch through `torch.from_numpy` views, its optimizer state swapped for views too): the same pages, the same
    cache placement, the same values for all. Every implementation keeps them finite (the ceiling's stores are
    bounded and keep exp_avg_sq >= 0), so no one meets NaNs or denormals the others do not."""

    def __init__(self, n, seed=0):
        rng = np.random.default_rng(seed)
        self.param = rng.standard_normal(n, dtype=np.float32)
        self.grad = rng.standard_normal(n, dtype=np.float32) * np.float32(1e-2)
        self.exp_avg = np.zeros(n, np.float32)
        self.exp_avg_sq = np.zeros(n, np.float32)


def hyperparameters(module):
    return dict(module.HYPERPARAMETERS)


def adamgen_state(module, buffers, step=0):
    state = module.init(buffers.param)
    state.update(step=step, exp_avg=buffers.exp_avg, exp_avg_sq=buffers.exp_avg_sq)
    return state


def adamgen_case(module, buffers):
    state = adamgen_state(module, buffers)
    hp = hyperparameters(module)
    param, grad = buffers.param, buffers.grad

    def run():
        module.step(param, grad, state, **hp)

    return run


def ceiling_case(buffers):
    arrays = buffers.param, buffers.grad, buffers.exp_avg, buffers.exp_avg_sq
    a, b, c = np.float32(0.9), np.float32(0.1), np.float32(1e-3)

    def run():
        ceiling_kernel(*arrays, a, b, c)

    return run


def torch_case(variant, module, buffers, mode):
    hp = hyperparameters(module)
    param = torch.from_numpy(buffers.param).requires_grad_(True)
    param.grad = torch.from_numpy(buffers.grad)
    optimizer = TORCH_CLASSES[variant](
        [param], lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=hp["weight_decay"],
        maximize=hp["maximize"], **{mode: True})
    optimizer.step()  # creates the state, which then moves onto the shared buffers
    state = optimizer.state[param]
    for name in ("exp_avg", "exp_avg_sq"):
        shared = torch.from_numpy(getattr(buffers, name))
        if state[name].shape != shared.shape or state[name].dtype != shared.dtype:
            raise RuntimeError(f"unexpected torch optimizer state {name}: {state[name].shape} {state[name].dtype}")
        state[name] = shared
    return optimizer.step


# ------------------------------------------------------------------------------------------------------ main benchmark


def bench_size(n, modules, repeat, rounds, log):
    buffers = Buffers(n)
    numba_cases = {f"adamgen/{v}": adamgen_case(modules[v], buffers) for v in VARIANTS}
    numba_cases["ceiling"] = ceiling_case(buffers)
    torch_cases = {f"{mode}/{v}": torch_case(v, modules[v], buffers, mode) for v in VARIANTS
                   for mode in ("fused", "foreach")}
    samples, info = measure([numba_cases, torch_cases], repeat, rounds, log, f"2^{n.bit_length() - 1}")
    return {key: summary(s) for key, s in samples.items()}, info


def ratios(n, timings):
    ceiling = timings["ceiling"]["median_s"]
    out = {"ceiling_GBps": BYTES_PER_ELEMENT * n / ceiling / 1e9}
    for v in VARIANTS:
        t = timings[f"adamgen/{v}"]["median_s"]
        out[v] = {
            "adamgen_GBps": BYTES_PER_ELEMENT * n / t / 1e9,
            "fused_GBps": BYTES_PER_ELEMENT * n / timings[f"fused/{v}"]["median_s"] / 1e9,
            "foreach_GBps": BYTES_PER_ELEMENT * n / timings[f"foreach/{v}"]["median_s"] / 1e9,
            "fraction_of_ceiling": ceiling / t,
            "fused_fraction_of_ceiling": ceiling / timings[f"fused/{v}"]["median_s"],
            "speedup_vs_fused": timings[f"fused/{v}"]["median_s"] / t,
            "speedup_vs_foreach": timings[f"foreach/{v}"]["median_s"] / t,
            # the same ratios per round (each round's own medians), to show the run-to-run spread
            "round_fraction_of_ceiling": [c / a for c, a in zip(timings["ceiling"]["round_medians_s"],
                                                               timings[f"adamgen/{v}"]["round_medians_s"])],
            "round_speedup_vs_fused": [f / a for f, a in zip(timings[f"fused/{v}"]["round_medians_s"],
                                                            timings[f"adamgen/{v}"]["round_medians_s"])],
        }
    return out


# -------------------------------------------------------------------------------------------------------------- extras


def kernel_call(module, param, grad, state, hp):
    """The (kernel, args) that `module.step` would launch for these arrays, captured without running the kernel.

    Relies on the generated module's private `_update_parallel` / `_update_serial` names; None if they are absent.
    """
    if not (hasattr(module, "_update_parallel") and hasattr(module, "_update_serial")):
        return None
    originals = module._update_parallel, module._update_serial
    captured = {}

    def recorder(which):
        def record(*args):
            captured["kernel"], captured["args"] = which, args
        return record

    module._update_parallel, module._update_serial = recorder(originals[0]), recorder(originals[1])
    try:
        module.step(param, grad, state, **hp)
    finally:
        module._update_parallel, module._update_serial = originals
    return captured["kernel"], captured["args"]


def direct_case(module, buffers, kernel=None, patch_args=None, step=1000):
    """A closure calling the kernel directly with the args `step()` would pass at step `step` (which kernel `step()`
    would choose unless `kernel` is given)."""
    state = adamgen_state(module, buffers, step)
    chosen, args = kernel_call(module, buffers.param, buffers.grad, state, hyperparameters(module))
    kernel = kernel or chosen
    if patch_args:
        args = patch_args(args)

    def run():
        kernel(*args)

    return run


def step_case(module, buffers, step=1000):
    state = adamgen_state(module, buffers, step)
    hp = hyperparameters(module)
    param, grad = buffers.param, buffers.grad

    def run():
        module.step(param, grad, state, **hp)

    return run


def numba_medians(cases, repeat, rounds, log, label):
    """Summaries of several numba-only closures, each its own block, their order alternating between rounds."""
    samples, info = measure([{key: fn} for key, fn in cases.items()], repeat, rounds, log, label)
    out = {key: summary(s) for key, s in samples.items()}
    out["busy"] = info["foreign_cpus_kept_max"] > BUSY_LIMIT
    return out


def extras(modules, repeat, rounds, log):
    out = {}
    adam = modules["adam"]
    if not all(hasattr(m, name) for m in modules.values() for name in ("_update_parallel", "_update_serial")):
        log("extras skipped: the generated module has no _update_parallel/_update_serial")
        return out

    log("extras: step() wrapper overhead")
    wrapper = {}
    for k in (12, 16, 24):
        buffers = Buffers(2 ** k)
        for v in VARIANTS:
            m = numba_medians({"step": step_case(modules[v], buffers), "kernel": direct_case(modules[v], buffers)},
                              repeat, rounds, log, f"wrapper {v} 2^{k}")
            s, d = m["step"]["median_s"], m["kernel"]["median_s"]
            paired = [a - b for a, b in zip(m["step"]["round_medians_s"], m["kernel"]["round_medians_s"])]
            wrapper[f"{v}/{k}"] = {"step_s": s, "kernel_s": d, "overhead_s": statistics.median(paired),
                                   "overhead_fraction": statistics.median(paired) / s,
                                   "round_overheads_s": paired, "busy": m["busy"]}
    out["wrapper_overhead"] = wrapper

    log("extras: serial vs parallel kernel")
    threshold = {"PARALLEL_THRESHOLD": getattr(adam, "PARALLEL_THRESHOLD", None)}
    for k in THRESHOLD_SIZES:
        buffers = Buffers(2 ** k)
        m = numba_medians({"serial": direct_case(adam, buffers, adam._update_serial),
                           "parallel": direct_case(adam, buffers, adam._update_parallel)}, repeat, rounds, log,
                          f"threshold 2^{k}")
        s, p = m["serial"]["median_s"], m["parallel"]["median_s"]
        threshold[str(k)] = {"serial_s": s, "parallel_s": p, "parallel_speedup": s / p, "busy": m["busy"],
                             "round_parallel_speedups": [a / b for a, b in zip(m["serial"]["round_medians_s"],
                                                                               m["parallel"]["round_medians_s"])]}
    out["serial_vs_parallel_adam"] = threshold

    log("extras: radam vs adam")
    radam = adamgen.load("radam")

    def unrectified(args):
        return tuple(False if isinstance(a, (bool, np.bool_)) else a for a in args)

    comparison = {}
    for k in (20, 24):
        buffers = Buffers(2 ** k)
        cases = {"adam_step": step_case(adam, buffers), "radam_step": step_case(radam, buffers),
                 "adam_kernel": direct_case(adam, buffers), "radam_kernel_rectified": direct_case(radam, buffers),
                 "radam_kernel_unrectified": direct_case(radam, buffers, patch_args=unrectified)}
        m = numba_medians(cases, repeat, rounds, log, f"radam 2^{k}")
        entry = {key: value["median_s"] for key, value in m.items() if key != "busy"}
        entry["busy"] = m["busy"]
        entry["radam_over_adam_step"] = entry["radam_step"] / entry["adam_step"]
        entry["radam_over_adam_kernel"] = entry["radam_kernel_rectified"] / entry["adam_kernel"]
        comparison[str(k)] = entry
    out["radam_vs_adam"] = comparison
    return out


# ------------------------------------------------------------------------------------------------------------ metadata


def machine_info(threads):
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threading_layer": _threading_layer(),
        "numba_num_threads": numba.get_num_threads(),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "requested_threads": threads,
        "adamgen": adamgen.__version__,
        "git_commit": commit,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        return None


# --------------------------------------------------------------------------------------------------------------- table


def print_table(results):
    def ms(s):
        return f"{s * 1e3:9.3f}"

    def spread(values, scale=1):
        digits = 0 if scale == 100 else 2
        return f"[{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f}]"

    info = results["info"]
    print()
    print(f"threads: numba {info['numba_num_threads']} ({info['numba_threading_layer']}), "
          f"torch {info['torch_num_threads']}; {info['cpu_count']} CPUs ({info['cpu_model']})")
    print("median time per step (ms), effective bandwidth (GB/s, 28 B/element), ratios of medians "
          "[range of the per-round ratios]")
    header = (f"{'variant':7} {'n':>5} {'adamgen':>9} {'ceiling':>9} {'fused':>9} {'foreach':>9} {'GB/s':>6} "
              f"{'ceilGB/s':>8} {'%ceil':>6} {'(rounds)':>13} {'x fused':>8} {'(rounds)':>11} {'x foreach':>9}"
              "  targets")
    print(header)
    print("-" * len(header))
    for v in VARIANTS:
        for k, entry in results["sizes"].items():
            t, r = entry["timings"], entry["ratios"]
            rv = r[v]
            marks = []
            if rv["fraction_of_ceiling"] < TARGETS["fraction_of_ceiling"]:
                marks.append(f"MISS ceil>={TARGETS['fraction_of_ceiling']:.0%}")
            need = TARGETS["speedup_vs_fused"].get(int(k))
            if need is not None and rv["speedup_vs_fused"] < need:
                marks.append(f"MISS fused>={need}x")
            foreign = entry["rounds"]["foreign_cpus_kept_max"]
            if foreign > BUSY_LIMIT:
                marks.append(f"(busy machine: other processes used up to {foreign:.1f} CPUs)")
            print(f"{v:7} {'2^' + k:>5} {ms(t[f'adamgen/{v}']['median_s'])} {ms(t['ceiling']['median_s'])} "
                  f"{ms(t[f'fused/{v}']['median_s'])} {ms(t[f'foreach/{v}']['median_s'])} {rv['adamgen_GBps']:6.1f} "
                  f"{r['ceiling_GBps']:8.1f} {rv['fraction_of_ceiling']:6.1%} "
                  f"{spread(rv['round_fraction_of_ceiling'], 100):>13} "
                  f"{rv['speedup_vs_fused']:7.2f}x {spread(rv['round_speedup_vs_fused']):>11} "
                  f"{rv['speedup_vs_foreach']:8.2f}x  {' '.join(marks) or 'ok'}")
    print("rounds kept/run per size: " + ", ".join(
        f"2^{k} {e['rounds']['rounds_kept']}/{e['rounds']['rounds_run']}" for k, e in results["sizes"].items()))

    def busy(entry):
        return "  (busy machine)" if entry.get("busy") else ""

    ex = results.get("extras") or {}
    if "wrapper_overhead" in ex:
        print()
        print("step() wrapper overhead vs calling the kernel directly")
        for key, e in ex["wrapper_overhead"].items():
            v, k = key.split("/")
            print(f"  {v:6} 2^{k}: step {e['step_s'] * 1e6:10.1f} us  kernel {e['kernel_s'] * 1e6:10.1f} us  "
                  f"overhead {e['overhead_s'] * 1e6:7.1f} us ({e['overhead_fraction']:.1%}){busy(e)}")
    if "serial_vs_parallel_adam" in ex:
        e = ex["serial_vs_parallel_adam"]
        print()
        print(f"adam kernel, serial vs parallel (PARALLEL_THRESHOLD = {e['PARALLEL_THRESHOLD']})")
        for k in THRESHOLD_SIZES:
            d = e[str(k)]
            print(f"  2^{k}: serial {d['serial_s'] * 1e6:9.1f} us  parallel {d['parallel_s'] * 1e6:9.1f} us  "
                  f"parallel speedup {d['parallel_speedup']:.2f}x{busy(d)}")
    if "radam_vs_adam" in ex:
        print()
        print("radam vs adam (us)")
        for k, d in ex["radam_vs_adam"].items():
            print(f"  2^{k}: step adam {d['adam_step'] * 1e6:8.1f} radam {d['radam_step'] * 1e6:8.1f} "
                  f"({d['radam_over_adam_step']:.3f}x); kernel adam {d['adam_kernel'] * 1e6:8.1f} "
                  f"radam {d['radam_kernel_rectified'] * 1e6:8.1f} ({d['radam_over_adam_kernel']:.3f}x), "
                  f"radam unrectified {d['radam_kernel_unrectified'] * 1e6:8.1f}{busy(d)}")


# ---------------------------------------------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="16,20,24", help="comma-separated log2 element counts (default 16,20,24)")
    parser.add_argument("--out", default="bench-cpu.json", help="JSON output file (default bench-cpu.json in the cwd)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed calls per block per round (default: as many as fill about 0.15 s, at least 15)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds kept per size; each times every implementation once (default 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both numba and torch (default: the smaller of their defaults)")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip wrapper-overhead, serial/parallel and radam measurements")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    def log(message):
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    threads = args.threads or min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads())
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)

    modules = {v: adamgen.load(v) for v in VARIANTS}
    log(f"threads: numba {numba.get_num_threads()}, torch {torch.get_num_threads()}; compiling / warming up")
    # compile everything once on a tiny problem so no block pays for compilation
    tiny = Buffers(2 ** 17)
    ceiling_case(tiny)()
    for v in VARIANTS:
        adamgen_case(modules[v], tiny)()

    results = {"info": machine_info(threads), "bytes_per_element": BYTES_PER_ELEMENT, "targets": {
        "fraction_of_ceiling": TARGETS["fraction_of_ceiling"],
        "speedup_vs_fused": {str(k): v for k, v in TARGETS["speedup_vs_fused"].items()}}, "sizes": {}}
    results["info"]["numba_threading_layer"] = _threading_layer()
    start = time.perf_counter()
    for k in sizes:
        n = 2 ** k
        log(f"2^{k} = {n} elements, {args.repeat or 'about 0.15 s of'} calls x {args.rounds} rounds per implementation")
        timings, info = bench_size(n, modules, args.repeat, args.rounds, log)
        results["sizes"][str(k)] = {"n": n, "rounds": info, "timings": timings, "ratios": ratios(n, timings)}
    if not args.no_extras:
        results["extras"] = extras(modules, args.repeat, args.rounds, log)
    results["info"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["info"]["elapsed_s"] = time.perf_counter() - start

    print_table(results)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
