"""Parity with torch.optim on the CPU: the independent implementation that catches errors in the specs themselves.

For every torch.optim twin that a file in ``tests/variants/`` declares (a built-in under one option set), the generated
kernel and the torch optimizer run the same 200 steps from the same parameters and gradients, on a one-element tensor,
an empty one, a small 2-D one and one above the parallel threshold, with seeded random hyperparameters; the parameters
and every state array are compared with torch's, after step 1, 10 and 200. The two libraries run one after the other,
never interleaved step by step: each brings its own OpenMP runtime and switching between them is slow (see
TOOLCHAIN.md). Both run on one thread here, see ``_one_thread_each``.
"""

from __future__ import annotations

import zlib

import numba
import numpy as np
import pytest

import adamgen

import problems
import variants

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")

STEPS = 200
CHECKPOINTS = (1, 10, STEPS)
GRADIENT_POOL = 16  # gradients are drawn per step from this many random arrays per tensor, with a random sign

# name -> (draw random hyperparameters?, weight decay > 0, maximize). "defaults" passes no hyperparameter at all to
# either library, so it also checks that adamgen's defaults are torch's.
SETTINGS = {
    "defaults": (False, False, False),
    "random": (True, False, False),
    "decay": (True, True, False),
    "decay-maximize": (True, True, True),
}


def _seed(*parts) -> int:
    """A seed that depends only on the test's parameters (never on Python's per-run string hashing)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


@pytest.fixture(autouse=True, scope="module")
def _one_thread_each():
    """Run torch and numba on one thread each while these tests run.

    torch and numba each bring an OpenMP runtime whose threads spin-wait at barriers. With both pools at 2 threads on a
    2-core machine, or with another process busy on it, a 200-step run took up to 20 s instead of 0.1 s (a parallel
    region waits for a descheduled sibling thread). The parity checked here is about the update rule, not threading: the
    parallel kernel still runs (one tensor is above PARALLEL_THRESHOLD), and test_oracle.py runs it on every thread."""
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    numba.set_num_threads(numba_threads)


def _problem(case, setting, dtype):
    """Hyperparameters, initial parameters (unit normal) and STEPS gradients per tensor, all from one seed."""
    rng = np.random.default_rng(_seed(case.id, setting, dtype))
    randomize, weight_decay, maximize = SETTINGS[setting]
    hyperparameters = problems.sample_for(case, rng, weight_decay=weight_decay, maximize=maximize) if randomize else {}
    shapes = problems.random_shapes(rng)
    params = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    pools = [rng.standard_normal((GRADIENT_POOL, *shape)).astype(dtype) for shape in shapes]
    grads = [[pool[rng.integers(GRADIENT_POOL)] * int(rng.choice([-1, 1])) for pool in pools] for _ in range(STEPS)]
    return hyperparameters, params, grads


def _run_adamgen(case, hyperparameters, params, grads):
    module = adamgen.load(case.variant, **case.options)
    params = [p.copy() for p in params]
    states = [module.init(p) for p in params]
    snapshots = {}
    for step, step_grads in enumerate(grads, start=1):
        for param, grad, state in zip(params, step_grads, states):
            module.step(param, grad, state, **hyperparameters)
        if step in CHECKPOINTS:
            snapshots[step] = [_adamgen_snapshot(case, param, state) for param, state in zip(params, states)]
    return snapshots


def _adamgen_snapshot(case, param, state):
    snapshot = {"param": param.copy()}
    snapshot.update((torch_name, state[name].copy()) for name, torch_name in case.reference.states.items())
    snapshot.update((torch_name, np.float64(state[name])) for name, torch_name in case.reference.scalar_states.items())
    snapshot["step"] = state["step"]
    return snapshot


def _run_torch(case, hyperparameters, params, grads):
    tensors = [torch.tensor(p) for p in params]
    optimizer = getattr(torch.optim, case.reference.optimizer)(tensors, **case.reference.kwargs(hyperparameters))
    snapshots = {}
    for step, step_grads in enumerate(grads, start=1):
        for tensor, grad in zip(tensors, step_grads):
            tensor.grad = torch.from_numpy(grad)
        optimizer.step()
        if step in CHECKPOINTS:
            snapshots[step] = [_torch_snapshot(case, tensor, optimizer.state[tensor]) for tensor in tensors]
    return snapshots


def _torch_snapshot(case, tensor, state):
    snapshot = {"param": tensor.detach().numpy().copy()}
    snapshot.update((name, state[name].detach().numpy().copy()) for name in case.reference.states.values())
    snapshot.update((name, np.float64(state[name].item())) for name in case.reference.scalar_states.values())
    snapshot["step"] = int(state["step"].item())
    return snapshot


def _compare(case, dtype, ours, theirs, what):
    """Assert that adamgen's snapshots equal torch's within the case's tolerance for ``dtype``."""
    for k, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        assert mine["step"] == reference["step"]
        assert mine.keys() == reference.keys()
        for name, expected in reference.items():
            if name == "step":
                continue
            actual = mine[name]
            scalar = name in case.reference.scalar_states.values()
            tolerance = case.reference.scalar_tolerance if scalar else case.tolerance[dtype]
            if not scalar:
                assert actual.shape == expected.shape and actual.dtype == expected.dtype, (name, k)
            np.testing.assert_allclose(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol,
                                       err_msg=f"{what}: {name} of tensor {k} ({np.shape(mine['param'])})")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("case", variants.TWINS, ids=[case.id for case in variants.TWINS])
def test_matches_torch(case, setting, dtype):
    hyperparameters, params, grads = _problem(case, setting, dtype)
    ours = _run_adamgen(case, hyperparameters, params, grads)      # all numba work first,
    theirs = _run_torch(case, hyperparameters, params, grads)      # then all torch work

    for step in CHECKPOINTS:
        assert [s["step"] for s in ours[step]] == [step] * len(params)
        _compare(case, np.dtype(dtype).name, ours[step], theirs[step],
                 f"{case.id} {setting} {dtype} after step {step}, hyperparameters {hyperparameters}")
    # The parameters did move, by much more than the tolerance: agreeing on a no-op would prove nothing.
    tolerance = case.tolerance[dtype]
    for final, initial in zip(ours[STEPS], params):
        if initial.size:
            assert np.abs(final["param"] - initial).max() > 10 * (tolerance.atol + tolerance.rtol)


# The options that torch.optim has a flag for: a built-in with another option (cautious, ...) has no torch counterpart.
TORCH_OPTIONS = frozenset({"amsgrad", "decoupled_weight_decay"})


def test_twins_cover_every_torch_builtin():
    """There is one twin for each built-in whose spec names a torch.optim reference, under each option set torch has
    flags for, with that class; its state names are the generated module's, and the hyperparameters drawn for it are
    the module's."""
    from adamgen.variants import builtin_variants

    # Factored variants (adafactor: row and column states, torch's eps tuple) are held against their torch.optim class
    # in tests/variants/ (test_catalogue.py) and through adamgen.torch in test_factored.py instead.
    torch_builtins = sorted((name, tuple(sorted(options)), variant.name, variant.reference.removeprefix("torch.optim."))
                            for name, options, variant in builtin_variants()
                            if variant.reference.startswith("torch.optim.") and set(options) <= TORCH_OPTIONS
                            and not variant.factored)
    twins = sorted((case.variant, tuple(sorted(case.options)), case.module, case.reference.optimizer)
                   for case in variants.TWINS)
    assert twins == torch_builtins
    for case in variants.TWINS:
        module = adamgen.load(case.variant, **case.options)
        assert module.VARIANT == case.module
        assert tuple(case.reference.states) == module.STATES
        assert tuple(case.reference.scalar_states) == tuple(module.SCALAR_STATES)
        sampled = problems.sample_for(case, np.random.default_rng(0), weight_decay=True, maximize=True)
        assert set(sampled) == set(module.HYPERPARAMETERS)
        assert hasattr(torch.optim, case.reference.optimizer)
