"""The weight-decay options that apply to any variant with decoupled decay: ``corrected_weight_decay`` (decay
lr**2/max_lr * weight_decay per step; Defazio et al. 2025, timm's option) and ``cautious_weight_decay`` (decay only
where the parameter and the update agree in sign; Chen et al. 2025).

Independent references: NumPy transcriptions of the papers' AdamW and Lion with each option, in float64, and
torch.optim.AdamW driven with the weight decay that corrected decay amounts to (``weight_decay * lr / max_lr`` set in
the param group before each step). Generator check: the float64 kernel against the float64 oracle of the transformed
spec, for every built-in the options fit."""

import numpy as np
import pytest

import adamgen
from adamgen.errors import GenerateError, SpecError
from adamgen.oracle import Oracle
from adamgen.variants import BUILTINS, builtin, with_options

STEPS = 60
SHAPE = (37, 29)


def schedule(lr, k):
    """A cosine schedule from lr down to lr/10 over STEPS steps: lr/max_lr changes every step."""
    return lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * k / STEPS)))


def numpy_adamw(p, grads, lr, max_lr, weight_decay, corrected=False, cautious=False, beta1=0.9, beta2=0.999,
                eps=1e-8):
    """AdamW in float64 with either option, as the papers write it."""
    p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for k, g in enumerate(grads):
        t, lr_t = k + 1, schedule(lr, k)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        u = (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        decay = weight_decay * (lr_t / max_lr if corrected else 1.0)
        if cautious:
            decay = decay * (u * p >= 0)
        p = p * (1 - lr_t * decay) - lr_t * u
    return p


def numpy_lion(p, grads, lr, max_lr, weight_decay, corrected=False, cautious=False, beta1=0.9, beta2=0.99):
    p, m = p.copy(), np.zeros_like(p)
    for k, g in enumerate(grads):
        lr_t = schedule(lr, k)
        u = np.sign(beta1 * m + (1 - beta1) * g)
        m = beta2 * m + (1 - beta2) * g
        decay = weight_decay * (lr_t / max_lr if corrected else 1.0)
        if cautious:
            decay = decay * (u * p >= 0)
        p = p * (1 - lr_t * decay) - lr_t * u
    return p


REFERENCES = {"adamw": (numpy_adamw, 3e-3), "lion": (numpy_lion, 3e-4)}


def run_kernel(module, p, grads, lr, **hyperparameters):
    p = p.copy()
    state = module.init(p)
    for k, g in enumerate(grads):
        module.step(p, g.astype(p.dtype), state, lr=schedule(lr, k), **hyperparameters)
    return p


def problem(seed, dtype):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(SHAPE)
    grads = [rng.standard_normal(SHAPE) * rng.uniform(0.2, 2.0) for _ in range(STEPS)]
    return p.astype(dtype), grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("option", ["corrected_weight_decay", "cautious_weight_decay"])
@pytest.mark.parametrize("variant", sorted(REFERENCES))
def test_matches_the_papers_rule(variant, option, dtype):
    reference, lr = REFERENCES[variant]
    module = adamgen.load(variant, **{option: True})
    p, grads = problem(1, dtype)
    max_lr = 2 * lr if option == "corrected_weight_decay" else None
    extra = {"max_lr": max_lr} if max_lr else {}
    got = run_kernel(module, p, grads, lr, weight_decay=0.5, **extra)
    want = reference(p.astype(np.float64), grads, lr, max_lr or lr, 0.5,
                     corrected=option == "corrected_weight_decay", cautious=option == "cautious_weight_decay")
    plain = reference(p.astype(np.float64), grads, lr, lr, 0.5)
    assert np.abs(plain - want).max() > 1e-3  # the option changes the result far beyond the tolerance
    rtol, atol = (2e-5, 2e-6) if dtype == np.float32 else (1e-12, 1e-14)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_cautious_weight_decay_equals_the_variant_where_signs_agree():
    """Where the update and the parameter agree in sign the option changes nothing; elsewhere it only drops the decay.
    (To rounding: the kernel's common subexpressions group the update's product and quotient differently.)"""
    plain, cautious = adamgen.load("adamw"), adamgen.load("adamw", cautious_weight_decay=True)
    rng = np.random.default_rng(2)
    p = rng.standard_normal(4096).astype(np.float32)
    g = rng.standard_normal(4096).astype(np.float32)
    lr, weight_decay = 1e-2, 0.3
    a, b, undecayed = p.copy(), p.copy(), p.copy()
    plain.step(a, g, plain.init(a), lr=lr, weight_decay=weight_decay)
    cautious.step(b, g, cautious.init(b), lr=lr, weight_decay=weight_decay)
    plain.step(undecayed, g, plain.init(undecayed), lr=lr, weight_decay=0.0)
    agree = g * p >= 0  # first step: the update has the gradient's sign
    assert 1000 < agree.sum() < 3096
    np.testing.assert_allclose(b[agree], a[agree], rtol=3e-7, atol=1e-9)
    np.testing.assert_allclose(b[~agree], undecayed[~agree], rtol=3e-7, atol=1e-9)
    np.testing.assert_allclose((b - a)[~agree], lr * weight_decay * p[~agree], rtol=1e-3, atol=1e-7)


def _fitting_builtins(option):
    fitting = []
    for name in BUILTINS:
        try:
            fitting.append((name, with_options(builtin(name), **{option: True})))
        except SpecError:
            pass
    return fitting


@pytest.mark.parametrize("option", ["corrected_weight_decay", "cautious_weight_decay"])
def test_float64_kernel_matches_the_oracle_for_every_builtin_it_fits(option):
    fitting = _fitting_builtins(option)
    assert {"adamw", "lion", "adan"} <= {name for name, _ in fitting}
    for name, variant in fitting:
        module, oracle = adamgen.load(name, **{option: True}), Oracle(variant)
        p, grads = problem(3, np.float64)
        q, s, state = p.copy(), oracle.init(p), module.init(p)
        hyperparameters = {"weight_decay": 0.2, **({"max_lr": 2 * module.HYPERPARAMETERS["lr"]}
                                                    if option == "corrected_weight_decay" else {})}
        for g in grads[:20]:
            module.step(p, g, state, **hyperparameters)
            oracle.step(q, g, s, **hyperparameters)
        np.testing.assert_allclose(p, q, rtol=1e-11, atol=1e-13, err_msg=name)


def test_options_that_do_not_fit_are_refused_naming_the_problem():
    with pytest.raises(SpecError, match="weight_decay reaches the update of exp_avg"):
        adamgen.load("adam", corrected_weight_decay=True)
    with pytest.raises(SpecError, match="weight_decay must appear in the parameter's update only"):
        adamgen.load("lamb", cautious_weight_decay=True)
    with pytest.raises(GenerateError, match="decouple_lr and corrected_weight_decay both rescale"):
        adamgen.load("adamw", decouple_lr=True, corrected_weight_decay=True)


def test_the_cli_generates_them(tmp_path, capsys):
    from adamgen.cli import main

    assert main(["generate", "lion", "--cautious-weight-decay", "--corrected-weight-decay", "--target", "all",
                 "--out", str(tmp_path)]) == 0
    for target in ("cpu", "cuda"):
        source = (tmp_path / target / "lion_corrected_weight_decay_cautious_weight_decay.py").read_text()
        assert "--corrected-weight-decay --cautious-weight-decay" in source and "max_lr" in source


@pytest.mark.torch
def test_adamgen_torch_corrected_decay_equals_torch_adamw_with_the_decay_it_amounts_to():
    """adamgen.torch.AdamW(corrected_weight_decay=True) under a scheduler against torch.optim.AdamW whose group
    weight_decay is set to weight_decay * lr / max_lr before each step: torch then decays by lr**2/max_lr *
    weight_decay. max_lr defaults to the group's initial lr."""
    torch = pytest.importorskip("torch")
    import adamgen.torch as agt

    torch.manual_seed(0)
    weights = [torch.randn(17, 5), torch.randn(5)]
    ours = [torch.nn.Parameter(w.clone()) for w in weights]
    theirs = [torch.nn.Parameter(w.clone()) for w in weights]
    mine = agt.AdamW(ours, lr=1e-2, weight_decay=0.3, corrected_weight_decay=True)
    reference = torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.3)
    assert mine.param_groups[0]["max_lr"] == 1e-2
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30, eta_min=1e-3) for o in (mine, reference)]
    for _ in range(30):
        grads = [torch.randn_like(w) for w in weights]
        for params, optimizer in ((ours, mine), (theirs, reference)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
        reference.param_groups[0]["weight_decay"] = 0.3 * reference.param_groups[0]["lr"] / 1e-2
        mine.step()
        reference.step()
        for scheduler in schedulers:
            scheduler.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-7)
    assert not torch.equal(ours[0], weights[0])
