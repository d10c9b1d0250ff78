#!/usr/bin/env python
"""GPU benchmark: one optimizer step of adamgen's generated cuda `adam` and `adamw` against torch.optim and a copy.

    python benchmarks/bench_cuda.py [--sizes 20,22,24,26,28] [--out bench-cuda.json] [--rounds R] [--no-model]

Needs an NVIDIA GPU, numba-cuda and a CUDA build of torch; without them it prints why and exits with status 2.

For every size 2**k (float32 elements, one tensor) it times, all on torch's current stream, with CUDA events around a
batch of back-to-back calls (so a step that is bound by Python launch overhead is charged for it):

  adamgen    the generated module's full `step()` on torch CUDA tensors, wrapper included (what a user pays);
  kernel     the same kernel launched directly with the arguments `step()` prepares (the wrapper's cost is the difference);
  fused      torch.optim.Adam / AdamW(fused=True) on the same data;
  foreach    torch.optim.Adam / AdamW(foreach=True);
  copy       a device-to-device copy (`Tensor.copy_`, cudaMemcpyAsync) moving the same bytes as a step: Adam reads 4 and
             writes 3 float32 arrays, 28 bytes per element, so the copy moves 14 bytes per element each way;
  ceiling    a numba grid-stride kernel with Adam's access pattern and trivial arithmetic, same launch configuration.

Then a transformer-like model of 200 tensors (about 14M elements): `step_many` over views of flat buffers (one launch,
layout checked per call), `step` on the flat buffers themselves (one launch, no list), a Python loop of per-tensor
`step` calls, torch fused and foreach over the 200 tensors, and the copy of the same bytes.

Ratios in the JSON and the table: effective bandwidth (28 bytes per element / time), fraction of the copy's time and of
the ceiling's, and speedups torch_time / adamgen_time. Every block is repeated `--rounds` times in alternating order; the
figure is the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np

VARIANTS = ("adam", "adamw")
BYTES_PER_ELEMENT = 7 * 4  # read param, grad, exp_avg, exp_avg_sq; write param, exp_avg, exp_avg_sq; float32


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


# ----------------------------------------------------------------------------------------------------------------- timing


def gpu_seconds_per_call(torch, fn, min_seconds=0.2, max_calls=2000):
    """Seconds per call of `fn`, from CUDA events around a batch of back-to-back calls, after warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    once = max(time.perf_counter() - t0, 1e-6)
    calls = int(min(max_calls, max(5, min_seconds / once)))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3 / calls


def time_blocks(torch, blocks, rounds, log, label):
    """Median over rounds of each block's seconds per call; rounds alternate the order of the blocks."""
    samples = {name: [] for name in blocks}
    for r in range(rounds):
        order = list(blocks) if r % 2 == 0 else list(reversed(list(blocks)))
        for name in order:
            samples[name].append(gpu_seconds_per_call(torch, blocks[name]))
        log(f"  {label}: round {r + 1}/{rounds}")
    return {name: {"median_s": statistics.median(s), "rounds_s": s} for name, s in samples.items()}


# ---------------------------------------------------------------------------------------------------------------- set-ups


def torch_optimizer(torch, variant, module, params, mode):
    hp = module.HYPERPARAMETERS
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[variant]
    return cls(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=hp["weight_decay"],
               **{mode: True})


def captured_launch(module, param, grad, state):
    """The launch `module.step` makes for these arrays: (launch configuration, kernel arguments), without running it."""
    captured = {}
    kernel = module._update

    class Recorder:
        def __getitem__(self, config):
            def record(*args):
                captured["config"], captured["args"] = config, args
            return record

    module._update = Recorder()
    try:
        module.step(param, grad, state)
    finally:
        module._update = kernel
    return captured["config"], captured["args"]


def make_ceiling_kernel(cuda):
    @cuda.jit
    def ceiling(param, grad, exp_avg, exp_avg_sq, a, b, c):
        for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
            p = param[i]
            g = grad[i]
            m = exp_avg[i]
            v = exp_avg_sq[i]
            exp_avg[i] = a * m + b * g
            exp_avg_sq[i] = a * v + b * g
            param[i] = p - c * m
    return ceiling


def copy_block(torch, n):
    """A device-to-device copy moving as many bytes as an Adam step on n float32 elements (28 n bytes)."""
    source = torch.empty(BYTES_PER_ELEMENT * n // 8, dtype=torch.float32, device="cuda").normal_()
    target = torch.empty_like(source)
    return lambda: target.copy_(source)


def single_tensor_blocks(torch, cuda, modules, n, ceiling):
    generator = torch.Generator(device="cuda").manual_seed(0)
    start = torch.randn(n, device="cuda", generator=generator)
    grad = torch.randn(n, device="cuda", generator=generator) * 1e-2
    blocks, keep = {}, []
    for variant, module in modules.items():
        param, state = start.clone(), module.init(start)
        blocks[f"adamgen/{variant}"] = (lambda m=module, p=param, s=state: m.step(p, grad, s))
        kparam, kstate = start.clone(), module.init(start)
        config, args = captured_launch(module, kparam, grad, kstate)
        blocks[f"kernel/{variant}"] = (lambda k=module._update, c=config, a=args: k[c](*a))
        for mode in ("fused", "foreach"):
            tensor = start.clone().requires_grad_(True)
            tensor.grad = grad.clone()
            optimizer = torch_optimizer(torch, variant, module, [tensor], mode)
            blocks[f"{mode}/{variant}"] = optimizer.step
            keep.append(tensor)
    arrays = [cuda.as_cuda_array(t) for t in (start.clone(), grad, torch.zeros_like(start), torch.zeros_like(start))]
    blocks_per_grid = modules["adam"]._blocks(n)
    threads = modules["adam"].THREADS_PER_BLOCK
    a, b, c = np.float32(0.9), np.float32(0.1), np.float32(1e-3)
    blocks["ceiling"] = lambda: ceiling[blocks_per_grid, threads](*arrays, a, b, c)
    blocks["copy"] = copy_block(torch, n)
    return blocks, keep


def transformer_shapes(layers=12, width=256, vocab=8192, context=1024):
    """200 parameter tensors shaped like a small GPT: embeddings, 16 tensors per block, final norm and head."""
    shapes = [(vocab, width), (context, width), (width,), (width,)]
    for _ in range(layers):
        shapes += [(width, width)] * 4 + [(width,)] * 4  # q, k, v, out projections and biases
        shapes += [(width,)] * 4  # two layer norms
        shapes += [(4 * width, width), (4 * width,), (width, 4 * width), (width,)]  # MLP
    shapes += [(width,), (width,), (vocab, width), (vocab,)]
    return shapes


def model_blocks(torch, modules, shapes):
    sizes = [int(np.prod(s)) for s in shapes]
    total = sum(sizes)
    generator = torch.Generator(device="cuda").manual_seed(1)
    start = torch.randn(total, device="cuda", generator=generator) * 0.02
    flat_grad = torch.randn(total, device="cuda", generator=generator) * 1e-3
    grads = [g.view(s) for g, s in zip(flat_grad.split(sizes), shapes)]
    blocks, keep = {}, []
    for variant, module in modules.items():
        flat = start.clone()
        params = [p.view(s) for p, s in zip(flat.split(sizes), shapes)]
        state = module.init_many(params)
        blocks[f"step_many/{variant}"] = (lambda m=module, p=params, s=state: m.step_many(p, grads, s))
        flat2 = start.clone()
        flat_state = module.init(flat2)
        blocks[f"flat_step/{variant}"] = (lambda m=module, p=flat2, s=flat_state: m.step(p, flat_grad, s))
        separate = [start[a:a + n].clone().view(s) for a, n, s in zip(np.cumsum([0] + sizes[:-1]), sizes, shapes)]
        states = [module.init(p) for p in separate]

        def loop(m=module, ps=separate, ss=states):
            for p, g, s in zip(ps, grads, ss):
                m.step(p, g, s)
        blocks[f"loop/{variant}"] = loop
        for mode in ("fused", "foreach"):
            tensors = [p.clone().requires_grad_(True) for p in separate]
            for t, g in zip(tensors, grads):
                t.grad = g.clone()
            blocks[f"{mode}/{variant}"] = torch_optimizer(torch, variant, module, tensors, mode).step
            keep.append(tensors)
        keep += [flat, flat2, separate]
    blocks["copy"] = copy_block(torch, total)
    return blocks, keep, total


def ratios(n, timings, baseline_keys):
    """Bandwidths, fractions of the baselines and speedups over torch, per variant."""
    out = {"copy_GBps": BYTES_PER_ELEMENT * n / timings["copy"]["median_s"] / 1e9}
    if "ceiling" in timings:
        out["ceiling_GBps"] = BYTES_PER_ELEMENT * n / timings["ceiling"]["median_s"] / 1e9
    for variant in VARIANTS:
        entry = {}
        for key in baseline_keys:
            name = f"{key}/{variant}"
            t = timings[name]["median_s"]
            entry[f"{key}_GBps"] = BYTES_PER_ELEMENT * n / t / 1e9
            entry[f"{key}_fraction_of_copy"] = timings["copy"]["median_s"] / t
            if "ceiling" in timings:
                entry[f"{key}_fraction_of_ceiling"] = timings["ceiling"]["median_s"] / t
            for mode in ("fused", "foreach"):
                entry[f"{key}_speedup_vs_{mode}"] = timings[f"{mode}/{variant}"]["median_s"] / t
        for mode in ("fused", "foreach"):
            entry[f"{mode}_fraction_of_copy"] = timings["copy"]["median_s"] / timings[f"{mode}/{variant}"]["median_s"]
        out[variant] = entry
    return out


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


def print_table(results):
    print()
    print("median time per step (us) and speedups (torch time / adamgen time); bandwidth at 28 B/element")
    for k, entry in results["sizes"].items():
        t, r = entry["timings"], entry["ratios"]
        print(f"2^{k}: copy {t['copy']['median_s'] * 1e6:9.1f} us ({r['copy_GBps']:7.1f} GB/s)  "
              f"ceiling {t['ceiling']['median_s'] * 1e6:9.1f} us ({r['ceiling_GBps']:7.1f} GB/s)")
        for variant in VARIANTS:
            e = r[variant]
            print(f"  {variant:6} step {t[f'adamgen/{variant}']['median_s'] * 1e6:9.1f} us "
                  f"kernel {t[f'kernel/{variant}']['median_s'] * 1e6:9.1f} us "
                  f"fused {t[f'fused/{variant}']['median_s'] * 1e6:9.1f} us "
                  f"foreach {t[f'foreach/{variant}']['median_s'] * 1e6:9.1f} us | "
                  f"{e['adamgen_fraction_of_copy']:6.1%} of copy, x{e['adamgen_speedup_vs_fused']:.2f} fused, "
                  f"x{e['adamgen_speedup_vs_foreach']:.2f} foreach")
    if "model" in results:
        m = results["model"]
        t, r = m["timings"], m["ratios"]
        print(f"model: {m['tensors']} tensors, {m['elements']} elements; copy {t['copy']['median_s'] * 1e6:.1f} us")
        for variant in VARIANTS:
            e = r[variant]
            print(f"  {variant:6} step_many {t[f'step_many/{variant}']['median_s'] * 1e6:9.1f} us "
                  f"flat step {t[f'flat_step/{variant}']['median_s'] * 1e6:9.1f} us "
                  f"loop {t[f'loop/{variant}']['median_s'] * 1e6:9.1f} us "
                  f"fused {t[f'fused/{variant}']['median_s'] * 1e6:9.1f} us "
                  f"foreach {t[f'foreach/{variant}']['median_s'] * 1e6:9.1f} us | step_many "
                  f"x{e['step_many_speedup_vs_fused']:.2f} fused, x{e['step_many_speedup_vs_foreach']:.2f} foreach, "
                  f"{e['step_many_fraction_of_copy']:.1%} of copy")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20,22,24,26,28", help="comma-separated log2 element counts")
    parser.add_argument("--out", default="bench-cuda.json", help="JSON output file (default bench-cuda.json)")
    parser.add_argument("--rounds", type=int, default=3, help="times every block is repeated, alternating order (3)")
    parser.add_argument("--no-model", action="store_true", help="skip the 200-tensor model")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    def log(message):
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    torch, cuda = require_gpu()
    import adamgen

    modules = {v: adamgen.load(v, target="cuda") for v in VARIANTS}
    ceiling = make_ceiling_kernel(cuda)
    results = {"info": info(torch, cuda), "bytes_per_element": BYTES_PER_ELEMENT, "sizes": {}}
    log(f"{results['info']['gpu']}: compiling and warming up")
    begin = time.perf_counter()
    for k in [int(s) for s in args.sizes.split(",") if s.strip()]:
        n = 2 ** k
        blocks, keep = single_tensor_blocks(torch, cuda, modules, n, ceiling)
        timings = time_blocks(torch, blocks, args.rounds, log, f"2^{k}")
        results["sizes"][str(k)] = {"n": n, "timings": timings, "ratios": ratios(n, timings, ["adamgen", "kernel"])}
        del blocks, keep
        torch.cuda.empty_cache()
    if not args.no_model:
        shapes = transformer_shapes()
        blocks, keep, total = model_blocks(torch, modules, shapes)
        timings = time_blocks(torch, blocks, args.rounds, log, "model")
        results["model"] = {"tensors": len(shapes), "elements": total, "timings": timings,
                            "ratios": ratios(total, timings, ["step_many", "flat_step", "loop"])}
        del blocks, keep
    results["info"]["elapsed_s"] = time.perf_counter() - begin
    print_table(results)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
