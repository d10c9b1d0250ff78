"""The catalogue variants (VARIANTS.md rows 7-9, 11-15, 17) against independent implementations and the oracle.

Each row of ``CASES`` names a built-in (with its options), an independent reference, the hyperparameters both get and
the tolerance. The generated kernel runs ``STEPS`` steps in float32 and in float64 on a one-element, an empty, a small
2-D and a larger-than-``PARALLEL_THRESHOLD`` tensor; the reference runs the same steps in float64 from the same
(float32-representable) start with the same gradients. Parameters and every state the reference has are compared after
step 1, 10 and ``STEPS``.

References: ``numpy.*`` are the transcriptions of the papers in ``references.py``; ``optimi.*`` are torch-optimi's
optimizers, ``adabelief_pytorch`` is the official AdaBelief package and ``adam_atan2_pytorch`` the adam-atan2-pytorch
package, run on float64 tensors. Those import torch
inside the test only and are skipped where it (or the package) is missing; torch and numba work is never interleaved
(each brings its own OpenMP runtime).

A second test runs every new module's float64 kernel against ``adamgen.oracle.Oracle`` (the spec evaluated straight
through SymPy): a disagreement there is a code-generation bug, a disagreement with a reference a spec bug.
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import pytest

import adamgen
from adamgen.oracle import Oracle
from adamgen.variants import builtin, with_options

try:
    from . import references
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import references

STEPS = 100
CHECKPOINTS = (1, 10, STEPS)
PARALLEL_SIZE = 70_000  # above the CPU kernels' PARALLEL_THRESHOLD (32768), so the prange kernel runs too
SHAPES = [(1,), (0,), (5, 7), (PARALLEL_SIZE,)]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """``|actual - expected| <= atol * scale + rtol * |expected|`` per element, where ``scale`` is the largest magnitude
    in the expected array: absolute errors of a sum are relative to the size of its terms, and sizes differ widely
    between arrays (LaProp's exp_avg holds lr: ~1e-3 of other variants' exp_avg)."""

    rtol: float
    atol: float


# Two comparisons per case, with different jobs.
#
# float64 kernel against the float64 reference checks the spec: only the evaluation order differs, a few roundings of
# 2**-53 per step, so 50 per step over STEPS steps (5.6e-13) is generous; measured at most 6e-15 of the array's scale.
# A coefficient off by 1e-6 relative (lr * (1 + 1e-6)) fails it within 10 steps in every case.
#
# float32 kernel against the float64 reference checks precision. Every host constant (1 - lr*weight_decay,
# lr/bias_correction, ...) is rounded to float32 once per step (<= 2**-24 relative) and every operation rounds; a
# systematic error accumulates linearly, so after STEPS steps the error is at most ~STEPS * k * 2**-24 of the values'
# size, with k a handful of roundings per step. k = 8 gives 4.8e-5; measured at most 5.7e-6 of the array's scale (Adan
# with its defaults) and 3e-4 relative on the smallest elements, which the atol term (scaled by the array's size) covers.
FLOAT32 = Tolerance(rtol=STEPS * 8 * 2.0**-24, atol=STEPS * 8 * 2.0**-24)
FLOAT64 = Tolerance(rtol=STEPS * 50 * 2.0**-53, atol=STEPS * 50 * 2.0**-53)
# float64 kernel against the float64 oracle of the same spec: only evaluation order differs (measured at most 2.7e-15
# of the array's scale, AdEMAMix).
ORACLE = Tolerance(rtol=1e-12, atol=1e-13)


@dataclasses.dataclass(frozen=True)
class Case:
    """One built-in under fixed hyperparameters, compared with one independent implementation."""

    id: str
    variant: str                   # built-in name for adamgen.load
    reference: str                 # key of references.REFERENCES, or of TORCH_REFERENCES below
    hyperparameters: dict          # given to both; {} checks that the defaults agree
    options: dict = dataclasses.field(default_factory=dict)
    schedule: bool = False         # cosine learning-rate schedule from lr to lr/10 over the run
    tolerance: Tolerance = FLOAT32
    ties: str | None = None        # numpy reference that marks near-tied sign decisions (references.TIE), see below


DECAY = dict(weight_decay=0.05, maximize=True)

CASES = (
    # AdaBelief: paper transcription and the official package (rectify=False).
    Case("adabelief-defaults-numpy", "adabelief", "numpy.adabelief", {}),
    Case("adabelief-defaults-official", "adabelief", "adabelief_pytorch", {}),
    Case("adabelief-decay-numpy", "adabelief", "numpy.adabelief",
         dict(lr=3e-3, beta1=0.85, beta2=0.995, eps=1e-12, **DECAY)),
    Case("adabelief-decay-official", "adabelief", "adabelief_pytorch",
         dict(lr=3e-3, beta1=0.85, beta2=0.995, eps=1e-12, **DECAY), schedule=True),
    # Yogi, QHAdam: paper transcriptions.
    Case("yogi-defaults", "yogi", "numpy.yogi", {}, ties="numpy.yogi"),
    Case("yogi-decay", "yogi", "numpy.yogi", dict(lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-4, **DECAY),
         ties="numpy.yogi"),
    Case("qhadam-defaults", "qhadam", "numpy.qhadam", {}),
    Case("qhadam-decay", "qhadam", "numpy.qhadam",
         dict(lr=2e-3, beta1=0.9, beta2=0.99, nu1=0.8, nu2=0.6, eps=1e-7, **DECAY)),
    # LaProp: the learning rate lives in the momentum, so a schedule is part of the semantics.
    Case("laprop-defaults", "laprop", "numpy.laprop", {}),
    Case("laprop-decay-schedule", "laprop", "numpy.laprop",
         dict(lr=1e-3, beta1=0.8, beta2=0.99, eps=1e-10, **DECAY), schedule=True),
    Case("laprop_amsgrad-decay", "laprop", "numpy.laprop_amsgrad",
         dict(lr=1e-3, beta1=0.85, beta2=0.95, **DECAY), options={"amsgrad": True}, schedule=True),
    # Adan: torch-optimi (debiased betas, prev_grad stored negated) and the paper transcription.
    Case("adan-defaults-numpy", "adan", "numpy.adan", {}),
    Case("adan-defaults-optimi", "adan", "optimi.Adan", dict(lr=1e-3, eps=1e-8)),  # optimi: lr required, eps 1e-6
    Case("adan-decay-numpy", "adan", "numpy.adan",
         dict(lr=5e-3, beta1=0.9, beta2=0.85, beta3=0.95, eps=1e-6, **DECAY), schedule=True),
    Case("adan-decay-optimi", "adan", "optimi.Adan",
         dict(lr=5e-3, beta1=0.9, beta2=0.85, beta3=0.95, eps=1e-6, **DECAY), schedule=True),
    # Lion: torch-optimi and the paper transcription.
    Case("lion-defaults-numpy", "lion", "numpy.lion", {}, ties="numpy.lion"),
    Case("lion-defaults-optimi", "lion", "optimi.Lion", dict(lr=1e-4), ties="numpy.lion"),  # optimi: lr required
    Case("lion-decay-numpy", "lion", "numpy.lion", dict(lr=3e-4, beta1=0.95, beta2=0.98, **DECAY), schedule=True,
         ties="numpy.lion"),
    Case("lion-decay-optimi", "lion", "optimi.Lion", dict(lr=3e-4, beta1=0.95, beta2=0.98, **DECAY), schedule=True,
         ties="numpy.lion"),
    # ADOPT: clipping is active (the first steps divide by a single gradient's magnitude); timm's clip_exp 0.333.
    Case("adopt-defaults", "adopt", "numpy.adopt", {}),
    Case("adopt-decay", "adopt", "numpy.adopt",
         dict(lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-4, clip_exp=0.333, **DECAY), schedule=True),
    # AdEMAMix: with and without the alpha / beta3 warm-ups (both still running at step 10, both over by step 100).
    Case("ademamix-defaults", "ademamix", "numpy.ademamix", {}),
    Case("ademamix-warmup", "ademamix", "numpy.ademamix",
         dict(lr=2e-3, beta1=0.8, beta2=0.99, beta3=0.999, alpha=8.0, alpha_warmup=60, beta3_warmup=80, eps=1e-7,
              **DECAY)),
    # Adam-atan2.
    Case("adam_atan2-defaults", "adam_atan2", "numpy.adam_atan2", {}),
    Case("adam_atan2-decay", "adam_atan2", "numpy.adam_atan2",
         dict(lr=2e-3, beta1=0.85, beta2=0.99, a=1.5, b=0.8, **DECAY), schedule=True),
    # Schedule-free AdamW: the paper's x / z form and the authors' package (y / z form); warm-up over 30 steps.
    Case("schedulefree_adamw-defaults-numpy", "schedulefree_adamw", "numpy.schedulefree_adamw", {}),
    Case("schedulefree_adamw-defaults-package", "schedulefree_adamw", "schedulefree", {}),
    Case("schedulefree_adamw-warmup-numpy", "schedulefree_adamw", "numpy.schedulefree_adamw",
         dict(lr=1e-2, beta1=0.95, beta2=0.99, eps=1e-6, warmup_steps=30, r=0.5, weight_lr_power=1.5, **DECAY)),
    Case("schedulefree_adamw-warmup-package", "schedulefree_adamw", "schedulefree",
         dict(lr=1e-2, beta1=0.95, beta2=0.99, eps=1e-6, warmup_steps=30, r=0.5, weight_lr_power=1.5, **DECAY)),
    Case("adam_atan2-defaults-package", "adam_atan2", "adam_atan2_pytorch", {}),
    Case("adam_atan2-decay-package", "adam_atan2", "adam_atan2_pytorch",
         dict(lr=2e-3, beta1=0.85, beta2=0.99, a=1.5, b=0.8, **DECAY), schedule=True),
)


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _schedule(case: Case, hyperparameters: dict, defaults: dict) -> list[dict]:
    """The hyperparameters of every step: fixed, or with a cosine learning rate from lr down to lr/10."""
    if not case.schedule:
        return [hyperparameters] * STEPS
    lr = hyperparameters.get("lr", defaults["lr"])
    return [{**hyperparameters, "lr": lr * (0.55 + 0.45 * math.cos(math.pi * (t - 1) / (STEPS - 1)))}
            for t in range(1, STEPS + 1)]


def _problem(case: Case):
    """Initial parameters and gradients, float32 values (exactly representable in both precisions)."""
    rng = np.random.default_rng(_seed(case.variant, case.hyperparameters.get("lr"), case.schedule))
    params = [rng.standard_normal(shape, dtype=np.float32) for shape in SHAPES]
    grads = [[rng.standard_normal(shape, dtype=np.float32) for shape in SHAPES] for _ in range(STEPS)]
    return params, grads


def _run(impl, params, grads, schedule, snapshot):
    """Run ``impl`` (a generated module or a reference with the same interface); snapshots at the checkpoints."""
    params = [p.copy() for p in params]
    states = [impl.init(p) for p in params]
    out = {}
    for t, (step_grads, hyperparameters) in enumerate(zip(grads, schedule), start=1):
        for param, grad, state in zip(params, step_grads, states):
            impl.step(param, grad.astype(param.dtype), state, **hyperparameters)
        if t in CHECKPOINTS:
            out[t] = [snapshot(param, state) for param, state in zip(params, states)]
    return out


# --- torch references (torch is imported inside the tests that use them) -------------------------------------------


class TorchReference:
    """A torch optimizer per tensor behind the generated modules' interface, on float64 tensors sharing memory with the
    numpy parameter. Neither optimi nor adabelief_pytorch has ``maximize``; like torch they then step along -grad.
    ``decouple_lr``: the adamgen option of that name is on, so optimi runs with ``decouple_lr=True`` and the given
    ``max_lr`` (optimi's default max_lr, the initial lr, when none is given)."""

    def __init__(self, name, hyperparameters, decouple_lr=False):
        self.torch = pytest.importorskip("torch")
        self.name = name
        self.hyperparameters = dict(hyperparameters)
        self.decouple_lr = {"decouple_lr": decouple_lr, "max_lr": self.hyperparameters.pop("max_lr", None)}

    def init(self, param):
        tensor = self.torch.from_numpy(param)
        return {"step": 0, "tensor": tensor, "optimizer": self.make(tensor, dict(self.hyperparameters))}

    def step(self, param, grad, state, **hyperparameters):
        grad = -grad if hyperparameters.get("maximize") else grad
        state["tensor"].grad = self.torch.from_numpy(np.ascontiguousarray(grad, dtype=np.float64))
        for group in state["optimizer"].param_groups:
            group["lr"] = hyperparameters.get("lr", group["lr"])
        state["optimizer"].step()
        state["step"] += 1

    def optimizer_state(self, state):
        return state["optimizer"].state[state["tensor"]]


class OptimiLion(TorchReference):
    def make(self, tensor, h):
        optimi = pytest.importorskip("optimi")
        return optimi.Lion([tensor], lr=h["lr"], betas=(h.get("beta1", 0.9), h.get("beta2", 0.99)),
                           weight_decay=h.get("weight_decay", 0.0), foreach=False, triton=False, **self.decouple_lr)

    def states(self, state):
        return {"exp_avg": self.optimizer_state(state)["exp_avg"].numpy()}


class OptimiAdan(TorchReference):
    """optimi keeps the moments debiased (m / (1 - beta^t), through debiased betas) and prev_grad negated."""

    def make(self, tensor, h):
        optimi = pytest.importorskip("optimi")
        betas = (h.get("beta1", 0.98), h.get("beta2", 0.92), h.get("beta3", 0.99))
        return optimi.Adan([tensor], lr=h["lr"], betas=betas, eps=h["eps"], weight_decay=h.get("weight_decay", 2e-2),
                           adam_wd=False, kahan_sum=False, foreach=False, triton=False, **self.decouple_lr)

    def states(self, state):
        s, t = self.optimizer_state(state), state["step"]
        beta1, beta2, beta3 = (self.hyperparameters.get(k, d) for k, d in (("beta1", 0.98), ("beta2", 0.92),
                                                                           ("beta3", 0.99)))
        return {"exp_avg": s["exp_avg"].numpy() * (1 - beta1**t),
                "exp_avg_diff": s["exp_avg_diff"].numpy() * (1 - beta2**t),
                "exp_avg_sq": s["exp_avg_sq"].numpy() * (1 - beta3**t),
                "prev_grad": -s["prev_grad"].numpy()}


class OfficialAdaBelief(TorchReference):
    """adabelief-pytorch 0.2 with rectify=False and its default decoupled decay (weight_decouple=True)."""

    def make(self, tensor, h):
        adabelief_pytorch = pytest.importorskip("adabelief_pytorch")
        h.pop("maximize", None)
        betas = (h.pop("beta1", 0.9), h.pop("beta2", 0.999))
        return adabelief_pytorch.AdaBelief([tensor], betas=betas, rectify=False, weight_decouple=True,
                                           fixed_decay=False, amsgrad=False, print_change_log=False, **h)

    def states(self, state):
        s = self.optimizer_state(state)
        return {"exp_avg": s["exp_avg"].numpy(), "exp_avg_var": s["exp_avg_var"].numpy()}


class OptimiStableAdamW(TorchReference):
    """optimi keeps the moments bias-corrected (debiased betas), as the stableadamw spec does."""

    def make(self, tensor, h):
        optimi = pytest.importorskip("optimi")
        return optimi.StableAdamW([tensor], lr=h.get("lr", 1e-3), betas=(h.get("beta1", 0.9), h.get("beta2", 0.99)),
                                  eps=h.get("eps", 1e-6), weight_decay=h.get("weight_decay", 1e-2),
                                  kahan_sum=False, foreach=False, triton=False, **self.decouple_lr)

    def states(self, state):
        s = self.optimizer_state(state)
        return {"exp_avg": s["exp_avg"].numpy(), "exp_avg_sq": s["exp_avg_sq"].numpy()}


class LucidrainsAdamAtan2(TorchReference):
    """adam-atan2-pytorch's AdamAtan2 (weight decay p *= 1 - lr*wd, as the spec; its own defaults differ: lr 1e-4,
    beta2 0.99, so every hyperparameter is passed)."""

    def make(self, tensor, h):
        adam_atan2_pytorch = pytest.importorskip("adam_atan2_pytorch")
        return adam_atan2_pytorch.AdamAtan2([tensor], lr=h.get("lr", 1e-3), betas=(h.get("beta1", 0.9),
                                            h.get("beta2", 0.999)), weight_decay=h.get("weight_decay", 0.0),
                                            a=h.get("a", 1.27), b=h.get("b", 1.0))

    def states(self, state):
        s = self.optimizer_state(state)
        return {"exp_avg": s["exp_avg"].numpy(), "exp_avg_sq": s["exp_avg_sq"].numpy()}


class ScheduleFree(TorchReference):
    """schedulefree's AdamWScheduleFree in training mode, single-tensor path; it keeps z and exp_avg_sq as the spec."""

    def make(self, tensor, h):
        schedulefree = pytest.importorskip("schedulefree")
        h.pop("maximize", None)
        betas = (h.pop("beta1", 0.9), h.pop("beta2", 0.999))
        optimizer = schedulefree.AdamWScheduleFree([tensor], betas=betas, foreach=False, **h)
        optimizer.train()
        return optimizer

    def states(self, state):
        s = self.optimizer_state(state)
        return {"z": s["z"].numpy(), "exp_avg_sq": s["exp_avg_sq"].numpy()}


class OptimiAdamW(TorchReference):
    """optimi keeps the moments bias-corrected (debiased betas); torch.optim's exp_avg is m = m_hat * (1 - beta^t)."""

    def make(self, tensor, h):
        optimi = pytest.importorskip("optimi")
        h.pop("maximize", None)
        return optimi.AdamW([tensor], lr=h.get("lr", 1e-3), betas=(h.get("beta1", 0.9), h.get("beta2", 0.999)),
                            eps=h.get("eps", 1e-8), weight_decay=h.get("weight_decay", 1e-2), kahan_sum=False,
                            foreach=False, triton=False, **self.decouple_lr)

    def states(self, state):
        s, t = self.optimizer_state(state), state["step"]
        beta1, beta2 = self.hyperparameters.get("beta1", 0.9), self.hyperparameters.get("beta2", 0.999)
        return {"exp_avg": s["exp_avg"].numpy() * (1 - beta1**t), "exp_avg_sq": s["exp_avg_sq"].numpy() * (1 - beta2**t)}


TORCH_REFERENCES = {"optimi.Lion": OptimiLion, "optimi.Adan": OptimiAdan, "adabelief_pytorch": OfficialAdaBelief,
                    "optimi.StableAdamW": OptimiStableAdamW, "optimi.AdamW": OptimiAdamW,
                    "adam_atan2_pytorch": LucidrainsAdamAtan2, "schedulefree": ScheduleFree}


def make_reference(case: Case):
    if case.reference in TORCH_REFERENCES:
        return TORCH_REFERENCES[case.reference](case.reference, case.hyperparameters,
                                                bool(case.options.get("decouple_lr")))
    return references.REFERENCES[case.reference]()


# --- tests ------------------------------------------------------------------------------------------------------------


def max_errors(actual, expected) -> tuple[float, float]:
    """(max absolute error, max absolute error relative to the expected array's largest magnitude)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if expected.size == 0:
        return 0.0, 0.0
    error = np.abs(actual - expected).max()
    return float(error), float(error / max(np.abs(expected).max(), np.finfo(np.float64).tiny))


def assert_close(actual, expected, tolerance: Tolerance, what: str, excused=None) -> int:
    """Assert the tolerance everywhere except at ``excused`` elements; returns how many excused elements differ."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    if expected.size == 0:
        return 0
    scale = max(float(np.abs(expected).max()), np.finfo(np.float64).tiny)
    bad = ~(np.abs(actual - expected) <= tolerance.atol * scale + tolerance.rtol * np.abs(expected))
    if excused is not None:
        excused_bad = int(np.count_nonzero(bad & excused))
        actual, expected = actual[~excused], expected[~excused]
    else:
        excused_bad = 0
    np.testing.assert_allclose(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol * scale, err_msg=what)
    return excused_bad


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_matches_reference(case):
    check_against_reference(case)


def _without_decouple_lr(hyperparameters: dict, defaults: dict) -> dict:
    """The same decay without the decouple_lr option: weight_decay / max_lr (optimi's definition of the option)."""
    h = dict(hyperparameters)
    max_lr = h.pop("max_lr", defaults["max_lr"])
    h["weight_decay"] = h.get("weight_decay", defaults["weight_decay"]) / max_lr
    return h


def check_against_reference(case):
    """Run the case's kernel in float32 and float64 and its reference in float64; compare at the checkpoints."""
    module = adamgen.load(case.variant, **case.options)
    reference = make_reference(case)
    schedule = _schedule(case, case.hyperparameters, module.HYPERPARAMETERS)
    params, grads = _problem(case)

    def ours(param, state):
        snapshot = {"param": param.copy(), **{name: state[name].copy() for name in module.STATES}}
        snapshot.update((name, state[name]) for name in module.SCALAR_STATES)
        return snapshot

    def theirs(param, state):
        return {"param": param.copy(), **{k: np.copy(v) for k, v in reference.states(state).items()}}

    # All numba work first, then the reference (torch and numba must not alternate).
    kernels = {dtype: _run(module, [p.astype(dtype) for p in params], grads, schedule, ours)
               for dtype in ("float32", "float64")}
    expected = _run(reference, [p.astype(np.float64) for p in params], grads, schedule, theirs)

    # Sign decisions (Lion's update, Yogi's second moment) taken on an argument within references.TIE of zero may go
    # the other way in float32: disagreements are excused at those elements, and only there.
    ties = _run(references.REFERENCES[case.ties](), [p.astype(np.float64) for p in params], grads,
                [_without_decouple_lr(h, module.HYPERPARAMETERS) for h in schedule] if case.options.get("decouple_lr")
                else schedule, lambda param, state: {"near_tie": state["near_tie"].copy()}) if case.ties else None

    tolerances = {"float32": case.tolerance, "float64": FLOAT64}
    for dtype, run in kernels.items():
        for t in CHECKPOINTS:
            for k, (mine, exact) in enumerate(zip(run[t], expected[t])):
                assert set(exact) <= set(mine), (sorted(exact), sorted(mine))
                excused = ties[t][k]["near_tie"] if ties else None
                if excused is not None:
                    assert np.count_nonzero(excused) <= max(2, 0.002 * excused.size), "too many near-ties to test"
                for name, value in exact.items():
                    assert_close(mine[name], value, tolerances[dtype],
                                 f"{case.id} {dtype}: {name} of tensor {k} {SHAPES[k]} after step {t}", excused)
    # The run moved the parameters far beyond the tolerance (a kernel that does nothing cannot pass).
    moved = max(np.abs(final["param"] - p).max() for final, p in zip(expected[STEPS], params) if p.size)
    assert moved > 20 * (case.tolerance.rtol + case.tolerance.atol) * max(np.abs(p).max() for p in params if p.size)


ORACLE_CASES = {}
for _case in CASES:  # one case per generated module: the one with decay and maximize where there is one
    _module = with_options(builtin(_case.variant), **_case.options).name
    if _module not in ORACLE_CASES or _case.hyperparameters.get("maximize"):
        ORACLE_CASES[_module] = _case


@pytest.mark.parametrize("case", list(ORACLE_CASES.values()), ids=list(ORACLE_CASES))
def test_float64_kernel_matches_oracle(case):
    check_against_oracle(case)


def check_against_oracle(case):
    """Run the case's float64 kernel and the float64 oracle of its spec; compare at the checkpoints."""
    variant = with_options(builtin(case.variant), **case.options)
    module, oracle = adamgen.load(case.variant, **case.options), Oracle(variant)
    schedule = _schedule(case, case.hyperparameters, module.HYPERPARAMETERS)
    rng = np.random.default_rng(_seed("oracle", variant.name))
    shapes = [(1,), (0,), (40, 25)]
    params = [rng.standard_normal(shape) for shape in shapes]
    grads = [[rng.standard_normal(shape) for shape in shapes] for _ in range(STEPS)]

    def snapshot(param, state):
        return {"param": param.copy(), **{s.name: np.copy(state[s.name]) for s, _ in variant.states},
                **{s.name: state[s.name] for s, _ in variant.scalar_states}}

    ours = _run(module, params, grads, schedule, snapshot)
    exact = _run(oracle, params, grads, schedule, snapshot)
    for t in CHECKPOINTS:
        for k, (mine, expected) in enumerate(zip(ours[t], exact[t])):
            assert mine.keys() == expected.keys()
            for name in expected:
                assert_close(mine[name], expected[name], ORACLE, f"{variant.name}: {name} of tensor {k} after step {t}")


def test_catalogue_covers_the_new_builtins():
    """Every module of the catalogue variants has a reference case and an oracle case, and the references' defaults
    (typed in from the papers) are the specs' defaults."""
    from adamgen.variants import builtin_variants

    names = {case.variant for case in CASES}
    # (the cautious forms are covered with the other reduction variants, in test_reductions.py, and the decouple_lr
    # forms in test_decouple_lr.py)
    modules = {variant.name for name, options, variant in builtin_variants()
               if name in names and not {"cautious", "decouple_lr"} & set(options)}
    assert modules == set(ORACLE_CASES)
    for name in names:
        reference = references.REFERENCES[f"numpy.{name}"]()
        module = adamgen.load(name)
        assert {**reference.defaults, "maximize": False} == module.HYPERPARAMETERS, name
