"""NaN and infinity in gradients, states and hyperparameters: the generated modules do what torch.optim does.

For every built-in that torch.optim implements, each case runs 3 steps through the generated module's ``step`` (the
NumPy interface, which checks types, not ranges) and through the torch class on the same float32 data, single-tensor
path, with out-of-range hyperparameters written into the param group after construction (torch's constructor would
refuse them; its step computes with them). Parameters must agree exactly in where they are NaN, +inf and -inf, and
within float32 round-off elsewhere; states must be non-finite exactly where torch's are, and agree elsewhere.

Two deliberate differences, both documented in the README:
- torch updates moments with ``lerp``, ``m + w (g - m)``, which turns an infinite moment into NaN (inf - inf); adamgen
  computes ``b m + (1 - b) g``, which keeps it infinite. The parameter is NaN either way.
- Where torch's single-tensor step divides by zero in Python floats (``beta1 = 1`` makes its bias correction 0), it
  raises ZeroDivisionError; adamgen's host values are NumPy float64, so the step gives inf or NaN as the kernels'
  arithmetic does (adamgen.torch refuses such hyperparameters before any step, as torch's constructor does).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")

import adamgen  # noqa: E402
import variants  # noqa: E402

SHAPE = (4, 6)


def _grads(kind, rng):
    grads = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(3)]
    if kind == "grad-nan":
        grads[1][0, 0] = np.nan
    elif kind == "grad-inf":
        grads[0][1, 1], grads[2][2, 2] = np.inf, -np.inf
    elif kind == "grad-zero":
        grads = [np.zeros(SHAPE, np.float32) for _ in grads]
    return grads


# case -> (gradient kind, hyperparameter overrides, state poison)
CASES = {
    "grad-nan": ("grad-nan", {}, None),
    "grad-inf": ("grad-inf", {}, None),
    "state-nan": ("normal", {}, np.nan),
    "state-inf": ("normal", {}, np.inf),
    "lr-zero": ("normal", {"lr": 0.0}, None),
    "lr-negative": ("normal", {"lr": -1e-2}, None),
    "lr-inf": ("normal", {"lr": np.inf}, None),
    "beta1-one": ("normal", {"beta1": 1.0}, None),
    "beta2-one": ("normal", {"beta2": 1.0}, None),
    "beta1-above-one": ("normal", {"beta1": 1.5}, None),
    "eps-zero-grad-zero": ("grad-zero", {"eps": 0.0}, None),
    "eps-inf": ("normal", {"eps": np.inf}, None),
    "weight-decay-inf": ("normal", {"weight_decay": np.inf}, None),
    "weight-decay-negative": ("normal", {"weight_decay": -1.0}, None),
}


def _torch_group(case, hyperparameters):
    """adamgen's hyperparameters as torch's param-group entries."""
    group = {name: value for name, value in hyperparameters.items() if name not in ("beta1", "beta2")}
    return group


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("entry", variants.TWINS, ids=[c.id for c in variants.TWINS])
def test_nonfinite_values_behave_as_torch(entry, case):
    kind, overrides, poison = CASES[case]
    module = adamgen.load(entry.variant, **entry.options)
    if any(name not in module.HYPERPARAMETERS for name in overrides):
        pytest.skip(f"{module.VARIANT} has no {', '.join(overrides)}")
    rng = np.random.default_rng(7)
    start = rng.standard_normal(SHAPE).astype(np.float32)
    grads = _grads(kind, rng)
    hyperparameters = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.05, **overrides}
    hyperparameters = {name: value for name, value in hyperparameters.items() if name in module.HYPERPARAMETERS}

    param = start.copy()
    state = module.init(param)
    tensor = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = getattr(torch.optim, entry.reference.optimizer)([tensor], **entry.reference.kwargs({"lr": 1e-2}))
    group = optimizer.param_groups[0]
    group.update({name: value for name, value in hyperparameters.items() if name not in ("beta1", "beta2")})
    group["betas"] = (hyperparameters.get("beta1", group["betas"][0]), hyperparameters.get("beta2", group["betas"][1]))
    with np.errstate(all="ignore"):
        for k, grad in enumerate(grads):
            if k == 1 and poison is not None:  # after one good step, one element of the first state goes bad
                state[module.STATES[0]][0, 0] = poison
                optimizer.state[tensor][entry.reference.states[module.STATES[0]]][0, 0] = poison
            module.step(param, grad.copy(), state, **hyperparameters)
            tensor.grad = torch.from_numpy(grad.copy())
            try:
                optimizer.step()
            except ZeroDivisionError:  # torch's Python-float host arithmetic; adamgen's IEEE arithmetic goes on
                assert state["step"] == k + 1
                return
    tolerance = entry.tolerance["float32"]
    theirs = tensor.detach().numpy()
    np.testing.assert_array_equal(np.isnan(param), np.isnan(theirs))
    np.testing.assert_array_equal(np.isposinf(param), np.isposinf(theirs))
    np.testing.assert_array_equal(np.isneginf(param), np.isneginf(theirs))
    pairs = [(param, theirs)]
    pairs += [(state[name], optimizer.state[tensor][torch_name].numpy())
              for name, torch_name in entry.reference.states.items()]
    for ours, theirs in pairs:
        np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(theirs))
        finite = np.isfinite(theirs)
        np.testing.assert_allclose(ours[finite], theirs[finite], rtol=tolerance.rtol * 10, atol=tolerance.atol * 10)
    assert state["step"] == 3
