"""adamgen.torch's torch.optim semantics beyond the update: hyperparameter checks (at construction, in added param
groups and at each step), every hook kind, state_dict() with entries that are not a parameter's, load_state_dict's
checks of a checkpoint, and training under torch.amp.GradScaler."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")

import adamgen.torch as agt  # noqa: E402
import problems  # noqa: E402
import variants  # noqa: E402
from adamgen.variants import BUILTINS  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _torch_single_thread():
    """torch's and numba's OpenMP pools spin-wait against each other on 2 cores; tiny tensors need one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


DATA = torch.Generator().manual_seed(1)
X = torch.randn(32, 6, generator=DATA)
Y = torch.randn(32, 2, generator=DATA)


def loss_of(model):
    return torch.nn.functional.mse_loss(model(X), Y)


def train(model, optimizer, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        loss_of(model).backward()
        optimizer.step()


def snapshot(model, optimizer):
    """Parameters and a deep copy of the state dict, to tell that nothing changed."""
    return [p.detach().clone() for p in model.parameters()], copy.deepcopy(optimizer.state_dict())


def assert_unchanged(model, optimizer, before):
    params, state_dict = before
    for p, q in zip(model.parameters(), params):
        assert torch.equal(p, q)
    now = optimizer.state_dict()
    assert now["param_groups"] == state_dict["param_groups"]
    assert now["state"].keys() == state_dict["state"].keys()
    for index, entry in state_dict["state"].items():
        assert now["state"][index].keys() == entry.keys()
        for key, value in entry.items():
            assert torch.equal(now["state"][index][key], value), (index, key)


# -- hyperparameter checks ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"lr": math.nan}, "Invalid learning rate: nan"),
    ({"lr": torch.tensor(-1.0)}, "Invalid learning rate"),
    ({"lr": torch.tensor([1e-3, 1e-3])}, "Tensor lr must be 1-element"),
    ({"eps": math.nan}, "Invalid epsilon value: nan"),
    ({"weight_decay": math.nan}, "Invalid weight_decay value: nan"),
    ({"weight_decay": -1e-3}, "Invalid weight_decay value"),
    ({"betas": (math.nan, 0.999)}, "Invalid beta parameter at index 0: nan"),
    ({"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1: 1.0"),
    ({"betas": (0.9, torch.tensor([0.99, 0.99]))}, r"Tensor betas\[1\] must be 1-element"),
    ({"betas": (0.9,)}, "betas must be a tuple of 2 decay rates"),
    ({"lr": "0.1"}, "lr must be a real number"),
    ({"lr": None}, "lr must be a real number"),
])
@pytest.mark.parametrize("name", ["Adam", "AdamW", "Adamax", "NAdam", "RAdam"])
def test_torch_classes_refuse_what_torch_refuses_nan_included(name, kwargs, message):
    if name in ("Adam", "AdamW") and "betas" in kwargs and any(isinstance(b, torch.Tensor) for b in kwargs["betas"]):
        message = "betas must be either both floats or both Tensors"  # torch's Adam checks that first
    with pytest.raises(agt.HyperparameterError, match=message) as error:
        getattr(agt, name)(make_model().parameters(), **kwargs)
    assert isinstance(error.value, ValueError)


def test_nadam_momentum_decay_and_accepted_edge_values():
    with pytest.raises(ValueError, match="Invalid momentum_decay value: -0.2"):
        agt.NAdam(make_model().parameters(), momentum_decay=-0.2)
    with pytest.raises(ValueError, match="Invalid momentum_decay value: nan"):
        agt.NAdam(make_model().parameters(), momentum_decay=math.nan)
    # the edges torch accepts: 0 everywhere, a 1-element tensor lr of either shape, tensor betas
    for lr in (0.0, torch.tensor(1e-3), torch.tensor([1e-3])):
        agt.NAdam(make_model().parameters(), lr=lr, eps=0.0, weight_decay=0.0, betas=(0.0, 0.0), momentum_decay=0.0)
    agt.Adam(make_model().parameters(), betas=(torch.tensor(0.9), torch.tensor(0.99)))


def test_nan_set_after_construction_raises_at_step_before_anything_is_written():
    """torch checks only the constructor's arguments: a NaN (or negative) lr a user or scheduler sets later turns its
    parameters into NaN. adamgen checks the param groups at each step, before any kernel runs."""
    model = make_model()
    optimizer = agt.AdamW([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 1e-2}])
    train(model, optimizer, 2)
    for key, value in (("lr", math.nan), ("lr", torch.tensor(-1.0)), ("eps", math.nan), ("betas", (0.9, math.nan)),
                       ("weight_decay", -0.5)):
        good = optimizer.param_groups[1][key]
        optimizer.param_groups[1][key] = value
        optimizer.zero_grad()
        loss_of(model).backward()
        before = snapshot(model, optimizer)
        with pytest.raises(agt.HyperparameterError, match="step: param group 1: Invalid"):
            optimizer.step()
        assert_unchanged(model, optimizer, before)  # group 0, checked fine, was not stepped either
        optimizer.param_groups[1][key] = good
    optimizer.step()
    assert optimizer.state[model[0].weight]["step"] == optimizer.state[model[2].weight]["step"] == 3


def test_add_param_group_is_checked():
    model = make_model()
    optimizer = agt.Adam(model[0].parameters())
    with pytest.raises(ValueError, match="param group 1: Invalid epsilon value: nan"):
        optimizer.add_param_group({"params": model[2].parameters(), "eps": math.nan})
    with pytest.raises(ValueError, match="param group 1: capturable=True is not supported"):
        optimizer.add_param_group({"params": model[2].parameters(), "capturable": True})
    with pytest.raises(ValueError, match=r"param group 1: betas must be a tuple of 2 decay rates, got \(0.8,\)"):
        optimizer.add_param_group({"params": model[2].parameters(), "betas": (0.8,)})
    assert len(optimizer.param_groups) == 1
    optimizer.add_param_group({"params": model[2].parameters(), "beta1": 0.8, "beta2": 0.9, "lr": torch.tensor(1e-2)})
    assert optimizer.param_groups[1]["betas"] == (0.8, 0.9)
    optimizer.add_param_group({"params": model[1].parameters(), "beta2": 0.95})  # the other beta: the default's
    assert optimizer.param_groups[2]["betas"] == (0.9, 0.95)
    train(model, optimizer, 1)


def test_named_parameters_are_accepted_and_checked():
    model = make_model()
    optimizer = agt.AdamW(model.named_parameters(), lr=1e-2)
    assert optimizer.param_groups[0]["param_names"][0] == "0.weight"
    train(model, optimizer, 2)
    with pytest.raises(agt.UnsupportedTensorError, match="torch.int64"):
        agt.AdamW([("w", torch.zeros(3, dtype=torch.int64))])


@pytest.mark.parametrize("variant", sorted(BUILTINS))
def test_every_builtin_accepts_its_defaults_and_nearby_values(variant):
    """The shared checks (lr, eps, betas, weight_decay) never refuse a built-in's own settings."""
    agt.Optimizer(make_model().parameters(), variant)
    rng = np.random.default_rng(0)
    names = agt.Optimizer(make_model().parameters(), variant).defaults
    for _ in range(5):
        drawn = problems.sample_hyperparameters(problems.builtin_defaults(variant, {}), rng, weight_decay=True,
                                                maximize=False)
        agt.Optimizer(make_model().parameters(), variant, **{k: v for k, v in drawn.items() if k != "maximize"})
    if "betas" in names:
        wrong = (0.9,) * (len(names["betas"]) + 1)
        with pytest.raises(ValueError, match=f"betas must be a tuple of {len(names['betas'])} decay rates"):
            agt.Optimizer(make_model().parameters(), variant, betas=wrong)


@pytest.mark.parametrize("variant,kwargs,message", [
    ("qhadam", {"nu1": math.nan}, "Invalid nu1 value: nan"),
    ("ademamix", {"alpha": math.nan}, "Invalid alpha value: nan"),
    ("lion", {"lr": -1e-4}, "Invalid learning rate"),
    ("adan", {"betas": (0.98, 0.92, 1.5)}, "Invalid beta parameter at index 2: 1.5"),
    ("adamw", {"decouple_lr": True, "max_lr": 0.0}, "Invalid max_lr value: 0.0"),
])
def test_other_variants_get_the_shared_checks_and_no_nan(variant, kwargs, message):
    with pytest.raises(agt.HyperparameterError, match=message):
        agt.Optimizer(make_model().parameters(), variant, **kwargs)


# -- hooks -------------------------------------------------------------------------------------------------------------

def test_step_hooks_local_and_global_in_torchs_order():
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    model = make_model()
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)
    calls = []
    handles = [register_optimizer_step_pre_hook(lambda opt, args, kwargs: calls.append(("global pre", opt))),
               register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append(("global post", opt))),
               optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append(("pre", opt))),
               optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append(("post", opt)))]
    try:
        train(model, optimizer, 2)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [(name, optimizer) for name in ("global pre", "pre", "post", "global post")] * 2
    train(model, optimizer, 1)
    assert len(calls) == 8


def test_step_pre_hook_can_replace_the_arguments():
    """A pre-hook returning (args, kwargs) changes what step() receives (args start with the optimizer, as torch's):
    here it hands step a closure."""
    model = make_model()
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)

    def closure():
        optimizer.zero_grad()
        loss = loss_of(model)
        loss.backward()
        return loss

    optimizer.register_step_pre_hook(lambda opt, args, kwargs: (args, {"closure": closure}))
    loss = optimizer.step()
    assert isinstance(loss, torch.Tensor) and optimizer.state[model[0].weight]["step"] == 1


def test_state_dict_hooks_and_entries_that_are_not_a_parameters():
    """torch's own tests: a pre-hook puts an entry that is not a dict into optimizer.state, a post-hook takes it out."""
    model = make_model()
    optimizer = agt.NAdam(model.parameters(), lr=1e-2)
    train(model, optimizer, 2)
    optimizer.register_state_dict_pre_hook(lambda opt: opt.state.__setitem__("test", 1))
    state_dict = optimizer.state_dict()
    assert state_dict["state"]["test"] == 1
    assert state_dict["state"][0]["step"] == 2 and state_dict["state"][0]["mu_product"].dim() == 0

    def post_hook(opt, state_dict):
        state_dict["ran_pre_hook"] = state_dict["state"].pop("test", None) == 1
        return state_dict

    optimizer.register_state_dict_post_hook(post_hook)
    state_dict = optimizer.state_dict()
    assert state_dict["ran_pre_hook"] and "test" not in state_dict["state"]
    # the entry stays in optimizer.state: steps and checkpoints go on around it, into torch.optim too
    train(model, optimizer, 1)
    reference = torch.optim.NAdam(make_model().parameters())
    reference.load_state_dict(optimizer.state_dict())
    assert reference.state_dict()["state"][0]["step"] == 3


def test_load_state_dict_hooks_in_torchs_order():
    model = make_model()
    optimizer = agt.RAdam(model.parameters(), lr=1e-2)
    train(model, optimizer, 2)
    state_dict = optimizer.state_dict()

    def set_lr(opt, state_dict):
        state_dict["param_groups"][0]["lr"] = 0.002

    def replace(opt, state_dict):
        state_dict = copy.deepcopy(state_dict)
        state_dict["param_groups"][0]["lr"] = 0.003
        return state_dict

    def post_hook(opt):
        opt.state["ran_post_hook"] = opt.param_groups[0]["lr"]

    optimizer.register_load_state_dict_pre_hook(set_lr)
    optimizer.load_state_dict(state_dict)
    assert optimizer.param_groups[0]["lr"] == 0.002
    optimizer.register_load_state_dict_pre_hook(replace, prepend=True)  # runs first, so set_lr has the last word
    optimizer.register_load_state_dict_post_hook(post_hook)
    optimizer.load_state_dict(state_dict)
    assert optimizer.param_groups[0]["lr"] == 0.002 and optimizer.state["ran_post_hook"] == 0.002
    train(model, optimizer, 1)  # the non-dict entry the post-hook left does not disturb the step
    assert optimizer.state[model[0].weight]["step"] == 3
    assert optimizer.state_dict()["state"]["ran_post_hook"] == 0.002


# -- load_state_dict checks --------------------------------------------------------------------------------------------

def _broken(state_dict, change):
    state_dict = copy.deepcopy(state_dict)
    change(state_dict["state"][0])  # parameter 0: model[0].weight, shape (8, 6)
    return state_dict


BROKEN = [
    (lambda s: s.__setitem__("exp_avg", torch.zeros(1)), "exp_avg has shape \\(1,\\), its parameter \\(8, 6\\)"),
    (lambda s: s.__setitem__("exp_avg", torch.zeros(2, 8, 6)), "exp_avg has shape \\(2, 8, 6\\)"),
    (lambda s: s.__setitem__("exp_avg_sq", torch.zeros(6, 8)), "exp_avg_sq has shape \\(6, 8\\)"),
    (lambda s: s.pop("exp_avg"), "has no exp_avg"),
    (lambda s: s.pop("step"), "has no step"),
    (lambda s: s.pop("mu_product"), "has no mu_product"),
    (lambda s: s.__setitem__("exp_avg", 0.5), "exp_avg is a float, not a tensor"),
    (lambda s: s.__setitem__("step", "3"), "step must be a number"),
    (lambda s: s.__setitem__("step", 2.5), "step is 2.5; it must be a whole number"),
    (lambda s: s.__setitem__("step", torch.tensor(math.nan)), "step is nan"),
    (lambda s: s.__setitem__("mu_product", torch.ones(2)), "mu_product must be a number or a 1-element"),
]


@pytest.mark.parametrize("change,message", BROKEN, ids=[message.split(" ")[0] + f"-{k}"
                                                         for k, (_, message) in enumerate(BROKEN)])
def test_load_state_dict_refuses_a_checkpoint_that_does_not_fit(change, message):
    model = make_model()
    optimizer = agt.NAdam(model.parameters(), lr=1e-2)
    train(model, optimizer, 2)
    checkpoint = optimizer.state_dict()
    checkpoint["param_groups"][0]["lr"] = 0.5  # a refused checkpoint changes no hyperparameter either
    posted = []
    optimizer.register_load_state_dict_post_hook(posted.append)
    before = snapshot(model, optimizer)
    with pytest.raises(agt.StateDictError, match=message) as error:
        optimizer.load_state_dict(_broken(checkpoint, change))
    assert isinstance(error.value, ValueError) and "parameter 0 of param group 0" in str(error.value)
    assert_unchanged(model, optimizer, before)
    assert not posted
    train(model, optimizer, 1)
    assert optimizer.state[model[0].weight]["step"] == 3


def test_load_state_dict_refuses_a_state_that_is_not_a_dict():
    model = make_model()
    optimizer = agt.AdamW(model.parameters())
    train(model, optimizer, 1)
    checkpoint = optimizer.state_dict()
    checkpoint["state"][1] = [torch.zeros(8)]
    with pytest.raises(agt.StateDictError, match="parameter 1 of param group 0 is a list, not a dict"):
        optimizer.load_state_dict(checkpoint)


def test_load_state_dict_pre_hook_runs_before_the_checks():
    """A pre-hook may repair a checkpoint (here: one saved without exp_avg_sq) before it is checked."""
    model = make_model()
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)
    train(model, optimizer, 2)
    checkpoint = _broken(optimizer.state_dict(), lambda s: s.pop("exp_avg_sq"))
    repaired = copy.deepcopy(optimizer.state_dict())

    def repair(opt, state_dict):
        state_dict["state"] = repaired["state"]

    optimizer.register_load_state_dict_pre_hook(repair)
    optimizer.load_state_dict(checkpoint)
    train(model, optimizer, 1)
    assert optimizer.state[model[0].weight]["step"] == 3


def test_load_state_dict_accepts_what_torch_accepts():
    """Numbers for step and mu_product (old checkpoints; torch turns them into tensors), empty states, keys the kernel
    does not use, and state for a parameter loaded into a different dtype."""
    reference, ours = make_model(), make_model()
    torch_optimizer = torch.optim.NAdam(reference.parameters(), lr=1e-2)
    train(reference, torch_optimizer, 3)
    checkpoint = copy.deepcopy(torch_optimizer.state_dict())
    for entry in checkpoint["state"].values():
        entry["step"] = entry["step"].item()
        entry["mu_product"] = entry["mu_product"].item()
        entry["note"] = 7  # (a string would not survive: torch's load_state_dict rebuilds it as an iterable)
    del checkpoint["state"][3]  # model[2].bias: no state yet
    ours.load_state_dict(reference.state_dict())
    optimizer = agt.NAdam(ours.parameters())
    optimizer.load_state_dict(checkpoint)
    loaded = optimizer.state_dict()["state"]
    assert loaded[0]["step"].dtype == torch.float32 and loaded[0]["step"] == 3
    assert loaded[0]["mu_product"].dtype == torch.float64 and loaded[0]["note"] == 7 and 3 not in loaded
    train(ours, optimizer, 1)
    assert optimizer.state[ours[0].weight]["step"] == 4 and optimizer.state[ours[2].bias]["step"] == 1

    double = make_model().double()
    optimizer = agt.NAdam(double.parameters())
    optimizer.load_state_dict(torch_optimizer.state_dict())  # float32 state cast to the float64 parameters
    for p in double.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert optimizer.state[double[0].weight]["exp_avg"].dtype == torch.float64


# -- GradScaler --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [False, True], ids=["torch-forloop", "torch-fused"])
def test_grad_scaler_training_matches_torch(fused):
    """torch.amp.GradScaler on the CPU: it unscales the gradients for adamgen's optimizer (which, like torch's non-fused
    ones, does not take grad_scale/found_inf) and skips its step when a gradient is inf; torch's fused AdamW takes them
    itself. Both land on the same parameters, skip the same step and end with the same scale."""
    results = []
    for optimizer_class in (lambda params: torch.optim.AdamW(params, lr=1e-2, fused=fused, foreach=False),
                            lambda params: agt.AdamW(params, lr=1e-2)):
        model = make_model()
        optimizer = optimizer_class(model.parameters())
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12, growth_interval=3)
        scales = []
        for i in range(12):
            optimizer.zero_grad()
            scaler.scale(loss_of(model)).backward()
            if i in (4, 9):
                model[0].weight.grad[1, 2] = math.inf if i == 4 else math.nan
                before = [p.detach().clone() for p in model.parameters()]
            scaler.step(optimizer)
            if i in (4, 9):  # skipped: nothing moved
                assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
            scaler.update()
            scales.append(scaler.get_scale())
        assert optimizer.state[model[0].weight]["step"] == 10
        results.append(([p.detach().clone() for p in model.parameters()], scales))
    (theirs, their_scales), (ours, our_scales) = results
    assert our_scales == their_scales
    assert our_scales[4] == our_scales[3] / 2 and our_scales[9] == our_scales[8] / 2 and max(our_scales) > 2.0 ** 12
    tolerance = variants.case("adamw").tolerance["float32"]  # the torch twin's
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference, rtol=tolerance.rtol, atol=tolerance.atol)
    assert not getattr(agt.AdamW(make_model().parameters()), "_step_supports_amp_scaling", False)
