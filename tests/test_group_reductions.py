"""Reductions over every tensor stepped together (``GroupSum``: ``Spec.group_sum`` / ``Spec.group_norm``) and the
``clip_grad_norm`` option built on them (global gradient-norm clipping, as timm's Lamb and apex's FusedLAMB).

References: a NumPy transcription of timm's Lamb with ``max_grad_norm`` (the global norm over a list of 1-D, 2-D and 3-D
tensors, one of them empty), in float64; the float64 oracle's ``step_many``, which evaluates group sums over its list.
"""

import numpy as np
import pytest

import adamgen
from adamgen.oracle import Oracle
from adamgen.spec import Spec, grad, param, validate
from adamgen.variants import builtin, with_options

SHAPES = [(40,), (6, 7), (2, 3, 5), (1,), (0,), (300,)]
STEPS = 30


def global_norm_sgd() -> Spec:
    """A user's rule with both constructs: momentum SGD whose step is scaled by the global gradient norm and whose
    decay reads the group's mean square parameter."""
    spec = Spec("global_norm_sgd", doc="Momentum SGD with the step scaled by the global gradient norm.")
    lr, beta, eps, decay = spec.hyperparameters(lr=0.05, beta=0.9, eps=1e-8, decay=1e-3)
    (momentum,) = spec.states("momentum")
    norm = spec.group_norm("grad_norm", grad)
    square = spec.group_sum("param_square", param * param)
    m = spec.update(momentum, beta * momentum + grad / (norm + eps))
    spec.update(param, param * (1 - lr * decay * square / (1 + square)) - lr * m)
    return spec


def timm_lamb(params, grads_per_step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01,
              max_grad_norm=1.0):
    """timm's Lamb (bias correction, gradient averaging, no trust clipping, no trust ratio without weight decay) with
    global-norm clipping, in float64; apex's FusedLAMB computes the same (clipping by the global norm before the
    moments, the trust ratio only where weight_decay != 0 without use_nvlamb)."""
    params = [p.copy() for p in params]
    ms, vs = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
        clip = max(norm / max_grad_norm, 1.0)
        for p, g, m, v in zip(params, grads, ms, vs):
            g = g / clip
            m[...] = beta1 * m + (1 - beta1) * g
            v[...] = beta2 * v + (1 - beta2) * g * g
            update = (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps) + weight_decay * p
            w_norm, u_norm = np.linalg.norm(p), np.linalg.norm(update)
            ratio = w_norm / u_norm if weight_decay != 0 and w_norm > 0 and u_norm > 0 else 1.0
            p -= lr * ratio * update
    return params


def problem(dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[(rng.standard_normal(s) * scale).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


@pytest.mark.parametrize("weight_decay", [0.01, 0.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lamb_with_clip_grad_norm_matches_timm_lamb(dtype, weight_decay):
    module = adamgen.load("lamb", clip_grad_norm=True)
    assert module.GROUPED and module.REDUCE_PHASES == 2 and module.HYPERPARAMETERS["max_grad_norm"] == 1.0
    params, grads = problem(dtype)
    assert all(np.sqrt(sum(np.sum(g.astype(np.float64)**2) for g in step)) > 10 for step in grads)  # clipping acts
    want = timm_lamb([p.astype(np.float64) for p in params], [[g.astype(np.float64) for g in s] for s in grads],
                     weight_decay=weight_decay)
    unclipped = timm_lamb([p.astype(np.float64) for p in params], [[g.astype(np.float64) for g in s] for s in grads],
                          weight_decay=weight_decay, max_grad_norm=np.inf)
    # clipping changes the run (without decay there is no trust ratio, and a clipped gradient moves Adam's step only
    # through eps: less)
    assert max(np.abs(a - b).max() for a, b in zip(want, unclipped) if a.size) > (1e-3 if weight_decay else 1e-4)
    states = module.init_many(params)
    for step in grads:
        module.step_many(params, step, states, weight_decay=weight_decay)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
    for got, expected in zip(params, want):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    assert [s["step"] for s in states] == [STEPS] * len(SHAPES)


def variant_named(name):
    if name == "global_norm_sgd":
        return validate(global_norm_sgd())
    return with_options(builtin(name.split("+")[0]), clip_grad_norm=True)


@pytest.mark.parametrize("name", ["lamb+clip", "adamw+clip", "global_norm_sgd"])
def test_float64_kernels_match_the_oracle_over_the_group(name):
    variant = variant_named(name)
    module, oracle = adamgen.load(variant), Oracle(variant)
    params, grads = problem(np.float64, seed=1)
    expected = [p.copy() for p in params]
    states, expected_states = module.init_many(params), [oracle.init(p) for p in expected]
    for step in grads[:12]:
        module.step_many(params, step, states)
        oracle.step_many(expected, step, expected_states)
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_step_is_a_group_of_one_and_a_group_is_not_a_set_of_steps():
    module = adamgen.load(global_norm_sgd())
    params, grads = problem(np.float32, seed=2)
    singles, group = [p.copy() for p in params], [p.copy() for p in params]
    single_states, group_states = [module.init(p) for p in singles], module.init_many(group)
    module.step(singles[0], grads[0][0], single_states[0])
    module.step_many(group[:1], grads[0][:1], group_states[:1])
    np.testing.assert_array_equal(singles[0], group[0])
    for p, g, s in zip(singles[1:], grads[0][1:], single_states[1:]):
        module.step(p, g, s)
    module.step_many(group[1:], grads[0][1:], group_states[1:])
    assert not np.allclose(singles[1], group[1])  # normalised by the norm of five tensors, not of one


def test_clipping_turned_off_with_an_infinite_max_grad_norm():
    clipped, plain = adamgen.load("adamw", clip_grad_norm=True), adamgen.load("adamw")
    params, grads = problem(np.float32, seed=3)
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    sa, sb = clipped.init_many(a), plain.init_many(b)
    for step in grads[:5]:
        clipped.step_many(a, step, sa, max_grad_norm=np.inf)
        plain.step_many(b, step, sb)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.torch
def test_adamgen_torch_clips_over_a_param_group():
    torch = pytest.importorskip("torch")
    import adamgen.torch as agt

    params, grads = problem(np.float32, seed=4)
    tensors = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    optimizer = agt.Optimizer(tensors, variant="lamb", clip_grad_norm=True, lr=1e-3, max_grad_norm=0.5)
    for step in grads[:10]:
        for t, g in zip(tensors, step):
            t.grad = torch.from_numpy(g.copy())
        optimizer.step()
    want = timm_lamb([p.astype(np.float64) for p in params], [[g.astype(np.float64) for g in s] for s in grads[:10]],
                     max_grad_norm=0.5)
    for t, expected in zip(tensors, want):
        np.testing.assert_allclose(t.detach().numpy(), expected, rtol=1e-5, atol=1e-6)

    mixed = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3, dtype=torch.float64))]
    optimizer = agt.Optimizer(mixed, variant="lamb", clip_grad_norm=True)
    for t in mixed:
        t.grad = torch.ones_like(t)
    with pytest.raises(agt.UnsupportedTensorError, match="reduces over every tensor of a param group"):
        optimizer.step()
    assert not optimizer.state or all(not s for s in optimizer.state.values())
    assert all(torch.equal(t, torch.ones_like(t)) for t in mixed)


# --- step sizes estimated over a param group: prodigy and dadapt_adam ------------------------------------------------

ADAPTIVE = {  # variant -> (reference's import and class, hyperparameter sets: each with adamgen's names)
    "prodigy": ("prodigyopt", "Prodigy", [dict(weight_decay=0.01),
                                          dict(weight_decay=0.05, decouple=False, use_bias_correction=True,
                                               safeguard_warmup=True, growth_rate=1.1, beta3=0.99)]),
    "dadapt_adam": ("dadaptation", "DAdaptAdam", [dict(weight_decay=0.01),
                                                  dict(weight_decay=0.05, decouple=True, use_bias_correction=True,
                                                       growth_rate=1.1)]),
}
ADAPTIVE_STEPS = 120


def _reference_run(package, name, params, targets, noise, h, dtype="float64"):
    """The reference package's optimizer on one param group of tensors of ``dtype``, the gradient of the quadratic
    0.5 |p - target|^2 plus fixed noise at each step. Returns the parameters (float64) and the group's final d."""
    torch = pytest.importorskip("torch")
    reference = getattr(pytest.importorskip(package), name)
    h = dict(h)
    betas = (h.pop("beta1", 0.9), h.pop("beta2", 0.999))
    dtype = getattr(torch, dtype)
    tensors = [torch.tensor(p, dtype=dtype, requires_grad=True) for p in params]
    optimizer = reference(tensors, lr=1.0, betas=betas, **h)
    for step_noise in noise:
        for t, target, n in zip(tensors, targets, step_noise):
            t.grad = t.detach() - torch.tensor(target, dtype=dtype) + torch.tensor(n, dtype=dtype)
        optimizer.step()
    return [t.detach().double().numpy() for t in tensors], optimizer.param_groups[0]["d"]


def _adaptive_problem(seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s) for s in SHAPES]
    targets = [3 * rng.standard_normal(s) for s in SHAPES]
    noise = [[0.1 * rng.standard_normal(s) for s in SHAPES] for _ in range(ADAPTIVE_STEPS)]
    return params, targets, noise


def _largest_difference(found, expected):
    return max(float(np.abs(np.asarray(a, np.float64) - b).max()) for a, b in zip(found, expected) if b.size)


@pytest.mark.torch
@pytest.mark.parametrize("options", [0, 1], ids=["defaults", "options"])
@pytest.mark.parametrize("name", list(ADAPTIVE))
def test_adaptive_step_sizes_match_the_reference_over_a_param_group(name, options):
    """120 steps on a quadratic over one param group of 1-D, 2-D, 3-D, one-element and empty tensors, each
    implementation taking the gradient at its own parameters, against the reference package in float64: the NumPy
    module's ``step_many`` in float64 to 1e-9, and in float32, like adamgen.torch in float32, within twice the
    distance of the reference's own float32 run (measured: 0.1x to 1.0x it). d grows by orders of magnitude (from 1e-6), and while it grows the run is
    ill-conditioned: measured, the reference's float32 run is 0.75 from its float64 run after 20 prodigy steps,
    adamgen's float32 run 0.04. A wrong group sum or host rule shows far beyond either."""
    torch = pytest.importorskip("torch")
    import adamgen.torch as agt

    package, class_name, settings = ADAPTIVE[name]
    h = settings[options]
    params, targets, noise = _adaptive_problem(seed=5 + options)
    want, d = _reference_run(package, class_name, params, targets, noise, h)
    assert d > 1e4 * 1e-6, d  # the estimate moved far from d0
    theirs32, _ = _reference_run(package, class_name, params, targets, noise, h, "float32")
    float32_error = 2 * max(_largest_difference(theirs32, want), 1e-4)

    module = adamgen.load(name)
    for dtype in (np.float64, np.float32):
        ours = [p.astype(dtype) for p in params]
        states = module.init_many(ours)
        for step_noise in noise:
            grads = [(p - t + n).astype(dtype) for p, t, n in zip(ours, targets, step_noise)]
            module.step_many(ours, grads, states, **h)
        if dtype == np.float64:
            for got, expected in zip(ours, want):
                np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10, err_msg=name)
            assert all(state["d"] == pytest.approx(d, rel=1e-9) for state in states)
        else:
            assert _largest_difference(ours, want) <= float32_error

    tensors = [torch.nn.Parameter(torch.tensor(p, dtype=torch.float32)) for p in params]
    optimizer = agt.Optimizer(tensors, variant=name, lr=1.0, **h)
    for step_noise in noise:
        for t, target, n in zip(tensors, targets, step_noise):
            t.grad = t.detach() - torch.tensor(target, dtype=torch.float32) + torch.tensor(n, dtype=torch.float32)
        optimizer.step()
    assert _largest_difference([t.detach().numpy() for t in tensors], want) <= float32_error
