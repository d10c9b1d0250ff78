"""Compile every generated CUDA kernel to PTX and print what the scan found as JSON (one object on stdout).

    python tests/cuda_ptx_run.py SHARD COUNT     # kernels SHARD, SHARD + COUNT, ... of the list (ADAMGEN_CACHE_DIR set)

``tests/test_cuda.py`` starts COUNT of these in the background with its first test (one per spare core), beside the
simulator run, and asserts on their findings; no GPU is needed. The kernels are both forms of every pass of every
built-in variant under every option set and of the variants of ``cuda_reduction_specs.py``, typed as the generated
module launches them (``kernel_forms``, derived from the printed phases), float32 for compute capability 7.5, 8.0 and
9.0 and float64 for 8.0; the variants of ``LOW_PRECISION`` also with bfloat16, float16, and float32 parameters with
bfloat16 states (``STORAGE``), for 8.0 and 9.0.

Each kernel is typed and lowered once per dtype and its LLVM IR then compiled by NVVM for each compute capability
(numba-cuda's code library keeps the PTX per capability); where numba-cuda lacks that internal function, each
capability is a full ``numba.cuda.compile_ptx``. ``test_cuda.py`` checks that both give the same instructions.

Findings: "<module>|<storage>|<kernel>|sm_<cc>" -> {"target": whether the PTX targets that capability, "loads": whether
it loads the parameter's format from global memory, "stores": whether it stores to global memory, "problems": the lines
``ptx_problems`` reports}; "path": "front end once" or "compile_ptx"; "jobs": the kernels of all shards together.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys

# storage -> (the dtype kernels compute in, the format of the parameter and gradient, the format of the states)
STORAGE = {
    "float32": ("float32", "float32", "float32"),
    "float64": ("float64", "float64", "float64"),
    "bfloat16": ("float32", "bfloat16", "bfloat16"),
    "float16": ("float32", "float16", "float16"),
    "float32+bfloat16": ("float32", "float32", "bfloat16"),  # float32 parameters, bfloat16 moments
    "master_weights": ("float32", "bfloat16", "float32"),  # bfloat16 parameters, int16 remainders, float32 moments
}
COMPUTE_CAPABILITIES = {"float32": [(7, 5), (8, 0), (9, 0)], "float64": [(8, 0)], "bfloat16": [(8, 0), (9, 0)],
                        "float16": [(8, 0), (9, 0)], "float32+bfloat16": [(8, 0), (9, 0)],
                        "master_weights": [(8, 0), (9, 0)]}
# The variants whose kernels are also compiled for 16-bit storage: the same template code for every variant, so a
# representative set (elementwise with 2 to 4 states, a reduction, a user's spec with a group reduction).
LOW_PRECISION = ("adamw", "lion", "adan", "ademamix", "lamb", "centred_norm_sgd", "lamb_clip_grad_norm", "adamw_kahan",
                 "adamw_stochastic_rounding", "adamw_master_weights", "lamb_master_weights")


def remainders(variant) -> tuple:
    """The states of ``variant`` that hold remainders of float32 parameters (``master_weights``), or ()."""
    return tuple(s.name for s in variant.remainders)


def storages(variant) -> tuple:
    """The STORAGE keys a variant's kernels run on: master weights on bfloat16 parameters only, the others on any."""
    if remainders(variant):
        return ("master_weights",)
    return tuple(storage for storage in STORAGE if storage != "master_weights")


def ptx_problems(ptx: str, float32: bool = True) -> list[str]:
    """Lines of a kernel's PTX that betray a slow kernel: `.local` memory (spills, local arrays) always, and any `.f64`
    register or instruction in a float32 kernel."""
    pattern = r"\.local\b|\.f64\b" if float32 else r"\.local\b"
    return [line.strip() for line in ptx.splitlines() if re.search(pattern, line)]


def variants() -> dict:
    """Generated module name -> (checked variant, adamgen.load's arguments): every built-in under every option set (its
    shipped module), then the variants of cuda_reduction_specs.py (generated into the cache folder)."""
    from adamgen.variants import builtin_variants

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from cuda_reduction_specs import extra_variants

    found = {variant.name: (variant, name, options) for name, options, variant in builtin_variants()}
    found.update((variant.name, (variant, variant, {})) for variant in extra_variants())
    return found


@functools.lru_cache(maxsize=None)
def printed(variant):
    """The variant as the generator prints it for the cuda target: its kernel arrays and phases."""
    from adamgen.lower import lower
    from adamgen.printing import print_lowered
    from adamgen.targets.cuda import CUDA
    from adamgen.transforms import maximize

    return print_lowered(lower(maximize(variant)), CUDA.printer)


def kernel_names(phases) -> list[str]:
    """Each phase's kernel name: `_reduce<k>` for the reduce phases, `_update` for the last."""
    return ["_update" if k == len(phases) - 1 else f"_reduce{k}" for k in range(len(phases))]


def kernel_forms(variant, storage):
    """(kernel name, parameter names, argument types) of every kernel of the variant's module, from its printed phases,
    for arrays of ``storage`` (a key of STORAGE).

    Per pass, over one tensor: its arrays (1-D, C-contiguous; bfloat16 as int16, float16 as uint16), a reduce pass's
    2-D `partials`, then the phase's numbers in the compute dtype and its flags as booleans, each its own argument.
    Over tables: the int64 address and chunk tables, `partials`, the numbers' table (one row per tensor, the compute
    dtype), the flags' table (booleans) and `storage`, a tuple of one scalar of each array's type. A factored variant
    has the kernels over tables only, over a tile table, with the partial sums per row and column and the tables of
    values per slice, row and column (the compute dtype) besides."""
    from numba import boolean, float32, float64, int16, int64, types as numba_types, uint16

    kinds = {"float32": float32, "float64": float64, "bfloat16": int16, "float16": uint16}
    compute, params, states = STORAGE[storage]
    scalar = kinds[compute]
    lines = printed(variant)
    arrays = list(lines.arrays)
    elements = [kinds[params]] * 2 + [int16 if name in remainders(variant) else kinds[states] for name in arrays[2:]]
    forms = []
    for name, phase in zip(kernel_names(lines.phases), lines.phases):
        if lines.factored:  # over tables of tiles only; row, column and slice values in tables of their own
            names = ["addresses", "_tiles", "partials", "_row_parts", "_col_parts", "scalars", "flags",
                     "_slice_values", "_row_values", "_col_values", "storage"]
            types = [int64[:, ::1]] * 2 + [scalar[:, ::1]] * 4 + [boolean[:, ::1]] + [scalar[:, ::1]] * 3 \
                + [numba_types.Tuple(elements)]
            forms.append((f"{name}_tables", names, tuple(types)))
            continue
        partials = ["partials"] if phase.sums else []
        names = arrays + partials + list(phase.values) + list(phase.flags)
        types = [element[::1] for element in elements] + [scalar[:, ::1]] * len(partials) \
            + [scalar] * len(phase.values) + [boolean] * len(phase.flags)
        forms.append((name, names, tuple(types)))
        names = ["addresses", "chunks"] + partials + ["scalars", "flags", "storage"]
        types = [int64[:, ::1]] * 2 + [scalar[:, ::1]] * len(partials) + [scalar[:, ::1], boolean[:, ::1]] \
            + [numba_types.Tuple(elements)]
        forms.append((f"{name}_tables", names, tuple(types)))
    return forms


def without_device(cc):
    """Let numba-cuda compile device functions (the storage conversions, overloads of ``_load`` and ``_stored``) where
    no GPU is present: it asks the current device for its compute capability, which the scan supplies (``cc``) in
    its place. Nothing changes where a GPU is present."""
    import types

    from numba import cuda
    from numba.cuda import dispatcher

    if not cuda.is_available():
        dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)


def ptx_by_capability(function, types, capabilities):
    """{cc: PTX} of a kernel: typed and lowered once, then NVVM per capability; per capability compile_ptx if the
    internal function that allows that is missing. Returns (PTX by cc, which path)."""
    from numba import cuda

    without_device(capabilities[0])

    try:
        from numba.cuda.compiler import _compile_pyfunc_with_fixup
    except ImportError:
        return {cc: cuda.compile_ptx(function, types, cc=cc)[0] for cc in capabilities}, "compile_ptx"
    library, _ = _compile_pyfunc_with_fixup(function, types, device=False, cc=capabilities[0], abi="numba")
    return {cc: library.get_asm_str(cc=cc) for cc in capabilities}, "front end once"


def main() -> None:
    shard, count = int(sys.argv[1]), int(sys.argv[2])
    import adamgen

    jobs = [(name, load, storage, form) for name, (variant, *load) in variants().items()
            for storage in storages(variant) if storage in ("float32", "float64") or name in LOW_PRECISION
            for form in kernel_forms(variant, storage)]
    findings, path, modules = {}, None, {}
    for name, (loaded, options), storage, (kernel, _, types) in jobs[shard::count]:
        if name not in modules:
            modules[name] = adamgen.load(loaded, target="cuda", **options)
        capabilities = COMPUTE_CAPABILITIES[storage]
        ptxs, path = ptx_by_capability(getattr(modules[name], kernel).py_func, types, capabilities)
        compute, params, _ = STORAGE[storage]
        letter = {"float32": "f32", "float64": "f64"}.get(params, "[usb]16")  # what the parameter is loaded as
        for cc, ptx in ptxs.items():
            findings[f"{name}|{storage}|{kernel}|sm_{cc[0]}{cc[1]}"] = {
                "target": f".target sm_{cc[0]}{cc[1]}" in ptx,
                "loads": bool(re.search(rf"ld\.global(\.\w+)*\.{letter}\b", ptx)),
                "stores": "st.global" in ptx,
                "problems": ptx_problems(ptx, float32=compute == "float32"),
            }
    json.dump({"findings": findings, "path": path, "jobs": len(jobs)}, sys.stdout)


if __name__ == "__main__":
    main()
