#!/usr/bin/env python
"""GPU benchmark: adamgen's generated cuda `adamw` against torch.optim.AdamW and a same-run device-to-device copy.

    python benchmarks/bench_cuda.py [--out bench-cuda.json] [--sizes 20,22,24,26,28] [--rounds 3] [--only single,...]
    python benchmarks/bench_cuda.py --summarize bench-cuda.json     # the summary of a (possibly partial) result file

Needs an NVIDIA GPU, numba-cuda and a CUDA build of torch; without them it prints why and exits with status 2.

Sections (float32 throughout; every figure is timed on torch's current stream with CUDA events, one pair per call,
after a warm-up, so a call that is bound by its Python work is charged for it and a call whose kernels queue behind
the previous one's is charged only its GPU time):

  single  one tensor of 2^k elements: the module's `step` on torch CUDA tensors, torch.optim.AdamW(fused=True), and a
          device-to-device copy (`Tensor.copy_`) that moves the bytes an AdamW step moves (it reads param, grad,
          exp_avg, exp_avg_sq and writes param, exp_avg, exp_avg_sq: 28 bytes per element), so the copy's time over
          the step's time is the step's share of the bandwidth a copy reaches;
  model   the 198 tensors of bench_torch.py's transformer-like model (its shape function): adamgen.torch.AdamW through
          its default path (zero_grad(set_to_none=True): fresh gradient tensors before every step), the module's
          `step_many` over the 198 tensors, torch.optim.AdamW fused and foreach, and the copy of the same bytes;
  launch  the cost of a call with almost nothing to do: microseconds per `step` on a tiny tensor and per `step_many`
          on 200 tiny tensors (host wall time over back-to-back calls, synchronised), beside torch fused's;
  small   10,000 tensors of 10 to 1000 elements, the same four as for the model.

Every block of a section is repeated `--rounds` times, the order rotating. A block's figure is the median over all
its samples; a ratio (speedup = torch time / adamgen time, share of the copy = copy time / step time) is the median
over rounds of the ratio of the two blocks' medians within the round, which a busy machine disturbs least. The JSON
file is rewritten after each section, so an interrupted run leaves what it measured; with --budget, sections that
would start after that many seconds are skipped. Targets, printed at the end as
met or not: the step reaches 90 % of the copy's bandwidth at 2^26 elements and more, and adamgen.torch.AdamW is at
least as fast as torch fused on the 198-tensor model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
VARIANT = "adamw"
BYTES_PER_ELEMENT = 7 * 4  # AdamW reads 4 and writes 3 float32 arrays per element
TORCH_HYPERPARAMETERS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}
MODULE_HYPERPARAMETERS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2}
TARGETS = {"copy_share": 0.90, "copy_share_from_log2": 26, "model_speedup_vs_fused": 1.0}
SECTIONS = ("single", "model", "launch", "small")


def require_gpu():
    """(torch, numba.cuda) when a GPU is usable from both; otherwise the reason on stderr and exit status 2."""
    try:
        from numba import cuda
    except ImportError as error:
        unavailable(f"numba.cuda cannot be imported ({error}); install the cuda extra: pip install -e '.[cuda]'")
    if not cuda.is_available():
        unavailable("no CUDA GPU is available to numba (numba.cuda.is_available() is False); this benchmark needs an "
                    "NVIDIA GPU")
    try:
        import torch
    except ImportError:
        unavailable("torch is not installed; it is the reference this benchmark compares with")
    if not torch.cuda.is_available():
        unavailable(f"torch {torch.__version__} has no CUDA (a CPU build, or no GPU); install a CUDA build of torch")
    return torch, cuda


def unavailable(reason):
    print(f"bench_cuda: {reason}", file=sys.stderr)
    raise SystemExit(2)


def model_shapes(width: int = 280) -> list[tuple[int, ...]]:
    """The 198 parameter shapes of bench_torch.py's transformer-like model (17.6M elements at width 280)."""
    sys.path.insert(0, str(HERE))
    try:
        from bench_torch import transformer_shapes
    finally:
        sys.path.remove(str(HERE))
    return transformer_shapes(width)


def small_sizes(rng: np.random.Generator, count: int = 10_000, low: int = 10, high: int = 1000) -> list[int]:
    """Element counts of `count` small tensors, uniform in [low, high]."""
    return [int(n) for n in rng.integers(low, high + 1, count)]


# ----------------------------------------------------------------------------------------------------------- timing


def timed_calls(torch, fn, calls, before=None):
    """Seconds of each of `calls` calls of `fn`, from a CUDA event pair around each on the current stream; `before`
    (untimed) runs ahead of each call."""
    pairs = []
    for _ in range(calls):
        if before is not None:
            before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return [start.elapsed_time(end) * 1e-3 for start, end in pairs]


def time_blocks(torch, blocks, args, log, label):
    """blocks: name -> (fn, before or None). Per block: samples (s), each round's median (s), overall median (s)."""
    results = {name: {"samples_s": [], "round_medians_s": []} for name in blocks}
    names = list(blocks)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, before = blocks[name]
            warm = timed_calls(torch, fn, args.warmup, before)
            calls = int(min(args.max_calls, max(args.min_calls, args.block_seconds / max(min(warm), 1e-6))))
            samples = timed_calls(torch, fn, calls, before)
            results[name]["samples_s"] += samples
            results[name]["round_medians_s"].append(statistics.median(samples))
        log(f"  {label}: round {r + 1}/{args.rounds}: " + ", ".join(
            f"{name} {results[name]['round_medians_s'][-1] * 1e6:.1f} us" for name in names))
    for entry in results.values():
        entry["median_us"] = statistics.median(entry["samples_s"]) * 1e6
        entry["samples"] = len(entry.pop("samples_s"))
        entry["round_medians_us"] = [t * 1e6 for t in entry.pop("round_medians_s")]
    return results


def ratio(timings, numerator, denominator):
    """Median over rounds of numerator's round median / denominator's round median (same-run)."""
    a, b = timings[numerator]["round_medians_us"], timings[denominator]["round_medians_us"]
    return statistics.median(x / y for x, y in zip(a, b))


# --------------------------------------------------------------------------------------------------------- sections


def copy_block(torch, elements):
    """A device-to-device copy moving the bytes of an AdamW step on `elements` float32 elements: 14 bytes per element
    read and 14 written."""
    source = torch.empty(BYTES_PER_ELEMENT // 2 * elements, dtype=torch.uint8, device="cuda").random_(0, 255)
    target = torch.empty_like(source)
    return lambda: target.copy_(source)


def torch_optimizer(torch, params, grads, mode):
    """torch.optim.AdamW (`mode`: fused or foreach) over copies of `params` whose gradients are `grads`, and the
    copies."""
    params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, g in zip(params, grads):
        p.grad = g
    return torch.optim.AdamW(params, **TORCH_HYPERPARAMETERS, **{mode: True}), params


def section_single(torch, module, args, log):
    results = {}
    for k in [int(s) for s in args.sizes.split(",") if s.strip()]:
        results[str(k)] = one_tensor(torch, module, k, args, log)
        torch.cuda.empty_cache()  # this size's tensors went with one_tensor's frame
    return results


def one_tensor(torch, module, k, args, log):
    n = 1 << k
    generator = torch.Generator(device="cuda").manual_seed(k)
    start = torch.randn(n, device="cuda", generator=generator)
    grad = torch.randn(n, device="cuda", generator=generator) * 1e-2
    param = start.clone()
    state = module.init(param)
    fused, _ = torch_optimizer(torch, [start], [grad], "fused")
    copy = copy_block(torch, n)
    del start
    blocks = {"adamgen_step": ((lambda: module.step(param, grad, state, **MODULE_HYPERPARAMETERS)), None),
              "torch_fused": (fused.step, None),
              "copy": (copy, None)}
    timings = time_blocks(torch, blocks, args, log, f"2^{k}")
    return {
        "elements": n,
        "timings": timings,
        "copy_GBps": BYTES_PER_ELEMENT * n / timings["copy"]["median_us"] / 1e3,
        "adamgen_GBps": BYTES_PER_ELEMENT * n / timings["adamgen_step"]["median_us"] / 1e3,
        "torch_fused_GBps": BYTES_PER_ELEMENT * n / timings["torch_fused"]["median_us"] / 1e3,
        "adamgen_share_of_copy": ratio(timings, "copy", "adamgen_step"),
        "torch_fused_share_of_copy": ratio(timings, "copy", "torch_fused"),
        "speedup_vs_fused": ratio(timings, "torch_fused", "adamgen_step"),
    }


def many_tensor_blocks(torch, module, shapes, label, args, log):
    """adamgen.torch.AdamW (fresh gradients before each step), the module's step_many, torch fused and foreach, and
    the copy, over tensors of `shapes`."""
    import adamgen.torch

    generator = torch.Generator(device="cuda").manual_seed(len(shapes))
    starts = [torch.randn(shape, device="cuda", generator=generator) * 0.02 for shape in shapes]
    spare = [[torch.randn(shape, device="cuda", generator=generator) * 1e-3 for shape in shapes] for _ in range(2)]
    grads = spare[0]
    elements = sum(int(np.prod(shape)) for shape in shapes)

    ours = [torch.nn.Parameter(s.clone()) for s in starts]
    optimizer = adamgen.torch.AdamW(ours, **TORCH_HYPERPARAMETERS)
    turn = [0]

    def fresh_gradients():  # what autograd leaves after zero_grad(set_to_none=True) and backward: new tensors
        turn[0] ^= 1
        for p, g in zip(ours, spare[turn[0]]):
            p.grad = g

    params = [s.clone() for s in starts]
    states = module.init_many(params)
    fused, _ = torch_optimizer(torch, starts, grads, "fused")
    foreach, _ = torch_optimizer(torch, starts, grads, "foreach")
    copy = copy_block(torch, elements)
    del starts
    blocks = {"adamgen_torch": (optimizer.step, fresh_gradients),
              "adamgen_step_many": ((lambda: module.step_many(params, grads, states, **MODULE_HYPERPARAMETERS)), None),
              "torch_fused": (fused.step, None),
              "torch_foreach": (foreach.step, None),
              "copy": (copy, None)}
    timings = time_blocks(torch, blocks, args, log, label)
    result = {"tensors": len(shapes), "elements": elements, "timings": timings,
              "speedup": {f"{theirs}/{ours_}": ratio(timings, theirs, ours_)
                          for theirs in ("torch_fused", "torch_foreach")
                          for ours_ in ("adamgen_torch", "adamgen_step_many")},
              "share_of_copy": {name: ratio(timings, "copy", name)
                                for name in ("adamgen_torch", "adamgen_step_many", "torch_fused", "torch_foreach")}}
    return result


def section_model(torch, module, args, log):
    result = many_tensor_blocks(torch, module, model_shapes(args.width), "model", args, log)
    torch.cuda.empty_cache()
    return result


def section_small(torch, module, args, log):
    shapes = [(n,) for n in small_sizes(np.random.default_rng(0), args.small_count)]
    result = many_tensor_blocks(torch, module, shapes, "small", args, log)
    torch.cuda.empty_cache()
    return result


def wall_us_per_call(torch, fn, calls, rounds):
    """Median over rounds of host wall time per call (microseconds) over `calls` back-to-back calls, synchronised
    before and after."""
    for _ in range(3):
        fn()
    figures = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        begin = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        figures.append((time.perf_counter() - begin) / calls * 1e6)
    return {"median_us": statistics.median(figures), "rounds_us": figures, "calls": calls}


def section_launch(torch, module, args, log):
    tiny = [torch.randn(args.tiny, device="cuda") for _ in range(200)]
    grads = [torch.randn_like(t) for t in tiny]
    one, one_state = tiny[0].clone(), module.init(tiny[0])
    params = [t.clone() for t in tiny]
    states = module.init_many(params)
    fused_one, _ = torch_optimizer(torch, tiny[:1], grads[:1], "fused")
    fused_all, _ = torch_optimizer(torch, tiny, grads, "fused")
    blocks = {
        "adamgen_step_1_tensor": (lambda: module.step(one, grads[0], one_state, **MODULE_HYPERPARAMETERS), 1000),
        "torch_fused_1_tensor": (fused_one.step, 1000),
        "adamgen_step_many_200_tensors": (lambda: module.step_many(params, grads, states, **MODULE_HYPERPARAMETERS),
                                          100),
        "torch_fused_200_tensors": (fused_all.step, 100),
    }
    result = {"tiny_elements": args.tiny}
    for name, (fn, calls) in blocks.items():
        result[name] = wall_us_per_call(torch, fn, calls, args.rounds)
        log(f"  launch: {name} {result[name]['median_us']:.1f} us per call")
    return result


# ---------------------------------------------------------------------------------------------------------- results


def info(torch, cuda):
    import numba

    import adamgen

    device = cuda.get_current_device()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(),
        "compute_capability": list(device.compute_capability),
        "multiprocessors": device.MULTIPROCESSOR_COUNT,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_cuda": getattr(sys.modules.get("numba_cuda"), "__version__", None),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "adamgen": adamgen.__version__,
    }


def assess(results):
    """Whether each target is met (None where its figures are missing)."""
    single = results.get("single", {})
    shares = {k: v["adamgen_share_of_copy"] for k, v in single.items() if int(k) >= TARGETS["copy_share_from_log2"]}
    model = results.get("model", {}).get("speedup", {})
    speedup = model.get("torch_fused/adamgen_torch")
    return {
        "copy_share": (all(s >= TARGETS["copy_share"] for s in shares.values()) if shares else None),
        "model_speedup_vs_fused": None if speedup is None else speedup >= TARGETS["model_speedup_vs_fused"],
    }


def summary(results) -> list[str]:
    """The key figures and the targets, as lines of text."""
    lines = []
    gpu = results.get("info", {}).get("gpu", "unknown GPU")
    lines.append(f"bench_cuda on {gpu} (variant {results.get('variant', VARIANT)}, float32)")
    for k, entry in results.get("single", {}).items():
        t = entry["timings"]
        lines.append(f"  one tensor 2^{k}: step {t['adamgen_step']['median_us']:.1f} us ({entry['adamgen_GBps']:.0f} "
                     f"GB/s, {entry['adamgen_share_of_copy']:.1%} of copy), torch fused "
                     f"{t['torch_fused']['median_us']:.1f} us ({entry['torch_fused_share_of_copy']:.1%} of copy), "
                     f"copy {entry['copy_GBps']:.0f} GB/s; x{entry['speedup_vs_fused']:.2f} vs fused")
    for section, title in (("model", "model"), ("small", "small tensors")):
        entry = results.get(section)
        if not entry:
            continue
        t, s = entry["timings"], entry["speedup"]
        lines.append(f"  {title} ({entry['tensors']} tensors, {entry['elements']} elements): "
                     f"adamgen.torch.AdamW {t['adamgen_torch']['median_us']:.1f} us "
                     f"(x{s['torch_fused/adamgen_torch']:.2f} fused, x{s['torch_foreach/adamgen_torch']:.2f} foreach), "
                     f"step_many {t['adamgen_step_many']['median_us']:.1f} us "
                     f"(x{s['torch_fused/adamgen_step_many']:.2f} fused), torch fused "
                     f"{t['torch_fused']['median_us']:.1f} us, foreach {t['torch_foreach']['median_us']:.1f} us, "
                     f"copy {t['copy']['median_us']:.1f} us")
    launch = results.get("launch")
    if launch:
        lines.append("  launch overhead per call: " + ", ".join(
            f"{name} {launch[name]['median_us']:.1f} us" for name in launch if isinstance(launch[name], dict)))
    met = assess(results)
    shares = ", ".join(f"2^{k} {v['adamgen_share_of_copy']:.1%}" for k, v in results.get("single", {}).items()
                       if int(k) >= TARGETS["copy_share_from_log2"])
    speedup = results.get("model", {}).get("speedup", {}).get("torch_fused/adamgen_torch")

    def verdict(value):
        return "not measured" if value is None else ("met" if value else "NOT met")

    lines.append(f"  target: step >= {TARGETS['copy_share']:.0%} of a same-run device copy's bandwidth at "
                 f"2^{TARGETS['copy_share_from_log2']} elements and more: {shares or '-'} -> "
                 f"{verdict(met['copy_share'])}")
    lines.append(f"  target: adamgen.torch.AdamW >= {TARGETS['model_speedup_vs_fused']:.1f}x torch fused on the "
                 f"198-tensor model: {'-' if speedup is None else f'x{speedup:.2f}'} -> "
                 f"{verdict(met['model_speedup_vs_fused'])}")
    for section, error in results.get("errors", {}).items():
        lines.append(f"  {section}: failed: {error.strip().splitlines()[-1]}")
    for section in results.get("skipped", []):
        lines.append(f"  {section}: skipped (time budget)")
    return lines


def write(results, out):
    if out in (None, os.devnull):
        return
    temporary = f"{out}.tmp"
    with open(temporary, "w") as handle:
        json.dump(results, handle, indent=1)
    os.replace(temporary, out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-cuda.json", help="JSON output file (default bench-cuda.json)")
    parser.add_argument("--summarize", metavar="FILE", help="print the summary of a result file and exit")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run (default {','.join(SECTIONS)})")
    parser.add_argument("--sizes", default="20,22,24,26,28", help="log2 element counts of the single-tensor section")
    parser.add_argument("--width", type=int, default=280, help="model width (280: 17.6M elements in 198 tensors)")
    parser.add_argument("--small-count", type=int, default=10_000, help="tensors of the small section")
    parser.add_argument("--tiny", type=int, default=256, help="elements of each tensor of the launch section")
    parser.add_argument("--rounds", type=int, default=3, help="times every block is repeated, the order rotating")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each block's timed ones")
    parser.add_argument("--min-calls", type=int, default=5)
    parser.add_argument("--max-calls", type=int, default=100)
    parser.add_argument("--block-seconds", type=float, default=0.05, help="timed calls per block: about this long")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds: sections that would start later than this are skipped (default: none)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    if args.summarize:
        try:
            with open(args.summarize) as handle:
                results = json.load(handle)
        except (OSError, ValueError) as error:
            print(f"bench_cuda: no results to summarize in {args.summarize}: {error}", file=sys.stderr)
            return 1
        print("\n".join(summary(results)))
        return 0

    def log(message):
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    sections = [s for s in args.only.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    torch, cuda = require_gpu()
    import adamgen

    module = adamgen.load(VARIANT, target="cuda")
    results = {"variant": VARIANT, "info": info(torch, cuda), "bytes_per_element": BYTES_PER_ELEMENT,
               "targets": TARGETS, "settings": vars(args), "errors": {}}
    begin = time.perf_counter()
    log(f"bench_cuda: {results['info']['gpu']}; sections {', '.join(sections)}")
    run = {"single": section_single, "model": section_model, "small": section_small, "launch": section_launch}
    for section in sections:
        started = time.perf_counter()
        if args.budget is not None and started - begin > args.budget:
            results.setdefault("skipped", []).append(section)
            log(f"bench_cuda: section {section} skipped: {started - begin:.0f} s of the {args.budget:.0f} s budget "
                "spent")
            continue
        try:
            results[section] = run[section](torch, module, args, log)
        except Exception:  # noqa: BLE001  (recorded; the other sections still run)
            results["errors"][section] = traceback.format_exc()
            log(f"bench_cuda: section {section} failed:\n{results['errors'][section]}")
            torch.cuda.empty_cache()
        results.setdefault("section_seconds", {})[section] = time.perf_counter() - started
        results["meets_targets"] = assess(results)
        results["elapsed_s"] = time.perf_counter() - begin
        write(results, args.out)
    print("\n".join(summary(results)))
    if args.out not in (None, os.devnull):
        print(f"wrote {args.out}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
