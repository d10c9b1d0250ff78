"""adamgen.torch.Optimizer against torch.optim: trajectories, param groups, schedulers, checkpoints both ways, one
kernel call per group over the user's own tensors (never moved, copied or re-pointed), and the errors it raises."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")

import adamgen  # noqa: E402
import adamgen.torch as agt  # noqa: E402
import variants  # noqa: E402

# Every torch.optim twin (tests/variants/), by its id: adamgen variant, options (torch's flags of the same names), torch
# class and the case's extra keyword arguments (the same in both).
EQUIVALENT = {case.id: (case.variant, dict(case.options), getattr(torch.optim, case.reference.optimizer),
                        dict(case.hyperparameters)) for case in variants.TWINS}


def equivalent(*ids):
    """The EQUIVALENT entries with these ids (all of them without ids), as pytest parameters."""
    return [pytest.param(*EQUIVALENT[i], id=i) for i in ids or EQUIVALENT]


@pytest.fixture(autouse=True, scope="module")
def _torch_single_thread():
    """torch's and numba's OpenMP pools spin-wait against each other on 2 cores; tiny tensors need one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 3)).to(dtype)


DATA = torch.Generator().manual_seed(1)
X = torch.randn(64, 8, generator=DATA)
Y = torch.randint(0, 3, (64,), generator=DATA)


def loss_of(model):
    return torch.nn.functional.cross_entropy(model(X.to(next(model.parameters()).dtype)), Y)


def train(model, optimizer, steps, set_to_none=None, scheduler=None):
    """`steps` steps; set_to_none None alternates True and False, so both gradient lifetimes occur."""
    losses = []
    for i in range(steps):
        optimizer.zero_grad(set_to_none=(i % 2 == 0) if set_to_none is None else set_to_none)
        loss = loss_of(model)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


def flat_params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def record_calls(monkeypatch, module):
    """Record every ``module.step_tables`` call: (addresses, sizes, steps) per call."""
    calls = []
    original = module.step_tables

    def recording(addresses, sizes, steps, scalar_states, dtype, **hyperparameters):
        calls.append((np.array(addresses), np.array(sizes), np.array(steps)))
        return original(addresses, sizes, steps, scalar_states, dtype, **hyperparameters)

    monkeypatch.setattr(module, "step_tables", recording)
    return calls


# -- trajectories against torch.optim ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,options,torch_class,extra", equivalent())
def test_matches_torch_optim(name, options, torch_class, extra):
    reference, ours = make_model(), make_model()
    hyperparameters = {"lr": 1e-2, "betas": (0.8, 0.99), **extra}
    train(reference, torch_class(reference.parameters(), **hyperparameters, **options), 25)
    optimizer = agt.Optimizer(ours.parameters(), name, **options, **hyperparameters)
    train(ours, optimizer, 25)
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)


def test_one_call_equals_the_modules_step_per_tensor():
    """The optimizer's one call per group gives exactly what the generated module's step gives tensor by tensor."""
    model = make_model()
    module = adamgen.load("nadam")
    start = [p.detach().numpy().copy() for p in model.parameters()]
    states = [module.init(value) for value in start]
    optimizer = agt.Optimizer(model.parameters(), "nadam", lr=1e-2, weight_decay=0.01)
    for _ in range(4):
        optimizer.zero_grad()
        loss_of(model).backward()
        for value, p, state in zip(start, model.parameters(), states):
            module.step(value, p.grad.numpy(), state, lr=1e-2, weight_decay=0.01)
        optimizer.step()
    for value, p in zip(start, model.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), value)


def test_float64_and_mixed_dtypes_in_one_group():
    reference, ours = make_model(), make_model()
    for model in (reference, ours):
        model[0].double()
    mixed = lambda model: torch.nn.functional.cross_entropy(  # noqa: E731
        model[4](model[3](model[2](model[1](model[0](X.double()).float())))), Y)
    torch_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    optimizer = agt.AdamW(ours.parameters(), lr=1e-2)
    for model, opt in ((reference, torch_optimizer), (ours, optimizer)):
        for _ in range(10):
            opt.zero_grad()
            mixed(model).backward()
            opt.step()
    assert ours[0].weight.dtype == torch.float64 and optimizer.state[ours[0].weight]["exp_avg"].dtype == torch.float64
    for a, b in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_channels_last_parameter_matches_torch():
    def make():
        torch.manual_seed(3)
        conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        return conv
    images = torch.randn(2, 3, 6, 6).to(memory_format=torch.channels_last)
    results = []
    for optimizer_class in (torch.optim.AdamW, agt.AdamW):
        conv = make()
        assert not conv.weight.is_contiguous()
        optimizer = optimizer_class(conv.parameters(), lr=1e-2)
        for _ in range(5):
            optimizer.zero_grad()
            conv(images).square().mean().backward()
            optimizer.step()
        results.append(conv.weight.detach().clone())
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=1e-6)


# -- param groups, schedulers, closures --------------------------------------------------------------------------------

def groups_of(model, amsgrad_second):
    return [{"params": list(model[0].parameters()), "lr": 3e-2, "betas": (0.7, 0.95)},
            {"params": list(model[2].parameters()) + list(model[4].parameters()), "weight_decay": 0.2,
             "amsgrad": amsgrad_second}]


def test_param_groups_have_their_own_hyperparameters_and_options():
    reference, ours = make_model(), make_model()
    train(reference, torch.optim.AdamW(groups_of(reference, True), lr=1e-2), 15)
    optimizer = agt.AdamW(groups_of(ours, True), lr=1e-2)
    train(ours, optimizer, 15)
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)
    assert "max_exp_avg_sq" in optimizer.state[ours[4].weight]
    assert "max_exp_avg_sq" not in optimizer.state[ours[0].weight]


@pytest.mark.parametrize("make_scheduler", [
    lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5),
    lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-2, total_steps=20, cycle_momentum=True),
    lambda opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=5),
], ids=["steplr", "onecycle", "cosine-restarts"])
def test_lr_schedulers_work_unchanged(make_scheduler):
    reference, ours = make_model(), make_model()
    torch_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    train(reference, torch_optimizer, 20, scheduler=make_scheduler(torch_optimizer))
    optimizer = agt.AdamW(ours.parameters(), lr=1e-2)
    train(ours, optimizer, 20, scheduler=make_scheduler(optimizer))
    assert optimizer.param_groups[0]["lr"] == torch_optimizer.param_groups[0]["lr"]
    assert optimizer.param_groups[0]["betas"] == torch_optimizer.param_groups[0]["betas"]
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)


def test_one_cycle_momentum_reaches_the_kernel(monkeypatch):
    model = make_model()
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-1, total_steps=10, base_momentum=0.8,
                                                    max_momentum=0.95)
    seen = []
    module = adamgen.load("adamw")
    original = module.step_tables
    monkeypatch.setattr(module, "step_tables", lambda *a, **h: (seen.append((h["lr"], h["beta1"])), original(*a, **h))[1])
    train(model, optimizer, 3, scheduler=scheduler)
    expected_first = (optimizer.param_groups[0]["initial_lr"], 0.95)
    assert seen[0] == pytest.approx(expected_first)
    assert seen[-1][1] < 0.95 and seen[-1][0] > seen[0][0]


@pytest.mark.filterwarnings("ignore:You are using weight_decay")
def test_decouple_lr_matches_optimi_under_a_schedule():
    """decouple_lr: max_lr defaults to the group's initial lr (as optimi's to the constructor's), and a scheduler that
    lowers lr lowers the decay with it."""
    optimi = pytest.importorskip("optimi")
    reference, ours = make_model(), make_model()
    torch_optimizer = optimi.AdamW(reference.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
                                   decouple_lr=True, kahan_sum=False, foreach=False, triton=False)
    train(reference, torch_optimizer, 20,
          scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(torch_optimizer, T_max=20))
    optimizer = agt.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.05, decouple_lr=True)
    train(ours, optimizer, 20, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20))
    assert optimizer.param_groups[0]["max_lr"] == 1e-2
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)
    # without decouple_lr the same run decays by lr * weight_decay: far less, and a different trajectory
    plain = make_model()
    optimizer = agt.AdamW(plain.parameters(), lr=1e-2, weight_decay=0.05)
    train(plain, optimizer, 20, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20))
    assert (flat_params(plain) - flat_params(reference)).abs().max() > 1e-3


def test_step_with_closure_returns_the_loss():
    model = make_model()
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)

    def closure():
        optimizer.zero_grad()
        loss = loss_of(model)
        loss.backward()
        return loss

    first = optimizer.step(closure).item()
    for _ in range(20):
        last = optimizer.step(closure).item()
    assert last < first


def test_parameters_without_gradients_are_skipped():
    reference, ours = make_model(), make_model()
    optimizers = [torch.optim.AdamW(reference.parameters(), lr=1e-2), agt.AdamW(ours.parameters(), lr=1e-2)]
    for model, optimizer in zip((reference, ours), optimizers):
        frozen = model[2].weight.detach().clone()
        for i in range(6):
            optimizer.zero_grad()
            loss_of(model).backward()
            model[2].weight.grad = None  # this one never has a gradient
            if i % 3 == 1:
                model[0].bias.grad = None  # this one only sometimes
            optimizer.step()
        assert torch.equal(model[2].weight, frozen)
        assert model[2].weight not in optimizer.state or not optimizer.state[model[2].weight]
    assert optimizers[0].state[reference[0].bias]["step"] == optimizers[1].state[ours[0].bias]["step"] == 4
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)


# -- errors ------------------------------------------------------------------------------------------------------------

def test_sparse_gradients_are_refused_before_anything_is_written():
    embedding = torch.nn.Embedding(10, 4, sparse=True)
    dense = torch.nn.Linear(4, 1)
    optimizer = agt.AdamW(list(dense.parameters()) + list(embedding.parameters()))
    (dense(embedding(torch.tensor([1, 2]))).sum()).backward()
    before = dense.weight.detach().clone()
    with pytest.raises(agt.UnsupportedTensorError, match="sparse gradient"):
        optimizer.step()
    assert torch.equal(dense.weight, before)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.int64, torch.complex64])
def test_unsupported_parameter_dtypes_are_refused(dtype):
    param = torch.zeros(3, dtype=dtype)
    with pytest.raises(agt.UnsupportedTensorError, match=str(dtype)) as error:
        agt.AdamW([param])
    assert isinstance(error.value, TypeError) and isinstance(error.value, adamgen.AdamgenError)


def test_bad_hyperparameters_are_named():
    params = make_model().parameters()
    with pytest.raises(TypeError, match="momentum"):
        agt.AdamW(params, momentum=0.9)
    with pytest.raises(ValueError, match="learning rate"):
        agt.AdamW(make_model().parameters(), lr=-1.0)
    with pytest.raises(ValueError, match="beta"):
        agt.AdamW(make_model().parameters(), betas=(1.5, 0.9))
    with pytest.raises(adamgen.AdamgenError, match="no_such_variant"):
        agt.Optimizer(make_model().parameters(), "no_such_variant")


def test_torch_implementation_switches_are_accepted_or_refused():
    agt.AdamW(make_model().parameters(), foreach=False, fused=True, capturable=False, differentiable=False)
    with pytest.raises(ValueError, match="capturable"):
        agt.AdamW(make_model().parameters(), capturable=True)


def test_spec_names_are_accepted_for_betas():
    optimizer = agt.Optimizer(make_model().parameters(), "adamw", beta1=0.8, beta2=0.9)
    assert optimizer.defaults["betas"] == (0.8, 0.9)


# -- checkpoints -------------------------------------------------------------------------------------------------------

def through_bytes(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("name,options,torch_class,extra", equivalent("adamw_amsgrad", "adamax", "nadamw"))
def test_state_layout_is_torch_optims(name, options, torch_class, extra):
    reference, ours = make_model(), make_model()
    torch_optimizer = torch_class(reference.parameters(), lr=1e-2, **options, **extra)
    optimizer = agt.Optimizer(ours.parameters(), name, lr=1e-2, **options, **extra)
    train(reference, torch_optimizer, 3)
    train(ours, optimizer, 3)
    theirs, mine = torch_optimizer.state_dict(), optimizer.state_dict()
    assert set(mine["state"]) == set(theirs["state"])
    for index, state in theirs["state"].items():
        assert set(mine["state"][index]) == set(state)
        for key, value in state.items():
            assert mine["state"][index][key].shape == value.shape
            if key != "mu_product":  # kept in float64: see the README
                assert mine["state"][index][key].dtype == value.dtype, key
    assert mine["state"][0]["step"].dtype == torch.float32 and mine["state"][0]["step"].dim() == 0
    for mine_group, their_group in zip(mine["param_groups"], theirs["param_groups"]):
        shared = set(mine_group) & set(their_group)
        assert {"params", "lr", "betas", "eps", "weight_decay", "maximize"} <= shared
        assert {k: mine_group[k] for k in shared} == {k: their_group[k] for k in shared}


def test_checkpoint_round_trip_continues_the_same_trajectory():
    straight = make_model()
    train(straight, agt.NAdam(straight.parameters(), lr=1e-2, ), 10, set_to_none=False)

    first = make_model()
    optimizer = agt.NAdam(first.parameters(), lr=1e-2, )
    train(first, optimizer, 5, set_to_none=False)
    checkpoint = through_bytes({"model": first.state_dict(), "optimizer": optimizer.state_dict()})
    train(first, optimizer, 2)  # must not disturb the checkpoint

    resumed = make_model(seed=7)
    resumed.load_state_dict(checkpoint["model"])
    optimizer = agt.NAdam(resumed.parameters(), lr=1e-2, )
    optimizer.load_state_dict(checkpoint["optimizer"])
    train(resumed, optimizer, 5, set_to_none=False)
    assert torch.equal(flat_params(resumed), flat_params(straight))


@pytest.mark.parametrize("name,options,torch_class,extra", equivalent("adamw", "adamw_amsgrad", "nadam", "adamax"))
def test_checkpoints_move_between_torch_and_adamgen(name, options, torch_class, extra):
    """A torch.optim checkpoint continues in adamgen, an adamgen checkpoint continues in torch.optim: both land where an
    uninterrupted torch run lands."""
    straight = make_model()
    train(straight, torch_class(straight.parameters(), lr=1e-2, **options, **extra), 12)

    def resume(model_state, optimizer_state, make_optimizer):
        model = make_model(seed=5)
        model.load_state_dict(model_state)
        optimizer = make_optimizer(model)
        optimizer.load_state_dict(through_bytes(optimizer_state))
        return model, optimizer

    def torch_optimizer(model):
        return torch_class(model.parameters(), lr=1e-3)  # the checkpoint's lr (1e-2) must win

    def our_optimizer(model):
        return agt.Optimizer(model.parameters(), name, lr=1e-3, **options)

    # torch (4 steps) -> adamgen (4) -> torch (4)
    model = make_model()
    optimizer = torch_class(model.parameters(), lr=1e-2, **options, **extra)
    train(model, optimizer, 4)
    model, optimizer = resume(model.state_dict(), optimizer.state_dict(), our_optimizer)
    assert isinstance(optimizer, agt.Optimizer) and optimizer.param_groups[0]["lr"] == 1e-2
    train(model, optimizer, 4)
    model, optimizer = resume(model.state_dict(), optimizer.state_dict(), torch_optimizer)
    assert type(optimizer) is torch_class
    train(model, optimizer, 4)
    torch.testing.assert_close(flat_params(model), flat_params(straight), rtol=0, atol=1e-5)


def test_load_state_dict_with_amsgrad_switches_the_kernel():
    """A torch AdamW(amsgrad=True) checkpoint carries amsgrad in its param group: adamgen follows it per group."""
    model = make_model()
    torch_optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, amsgrad=True)
    train(model, torch_optimizer, 3)
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)
    optimizer.load_state_dict(torch_optimizer.state_dict())
    train(model, optimizer, 1)
    assert optimizer.param_groups[0]["amsgrad"] is True
    assert "max_exp_avg_sq" in optimizer.state[model[0].weight]


# -- one call over the user's own tensors ------------------------------------------------------------------------------

def test_one_call_per_group_over_the_tensors_where_they_are(monkeypatch):
    """Each step is one step_tables call for the group, whatever autograd does with the gradients, and its address
    table holds the addresses of the user's own parameters, gradients and state tensors."""
    model = make_model()
    params = list(model.parameters())
    addresses = [p.data_ptr() for p in params]
    optimizer = agt.AdamW(params, lr=1e-2)
    calls = record_calls(monkeypatch, adamgen.load("adamw"))
    train(model, optimizer, 6)  # zero_grad alternates set_to_none True and False
    assert len(calls) == 6
    assert [p.data_ptr() for p in params] == addresses  # never moved
    table, sizes, steps = calls[-1]
    expected = [[p.data_ptr(), p.grad.data_ptr(), optimizer.state[p]["exp_avg"].data_ptr(),
                 optimizer.state[p]["exp_avg_sq"].data_ptr()] for p in params]
    assert table.tolist() == expected
    assert sizes.tolist() == [p.numel() for p in params] and steps.tolist() == [5.0] * len(params)


def test_nothing_is_moved_or_re_pointed():
    """References taken before the first step stay the live tensors: parameters keep their own storage (a checkpoint
    of a submodule holds only its weights), gradients and states are the tensors the optimizer created or was given."""
    model = make_model()
    weight, grads_before = model[2].weight, None
    storage = weight.untyped_storage().data_ptr()
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)
    optimizer.zero_grad(set_to_none=False)
    train(model, optimizer, 1, set_to_none=False)
    grads_before = [p.grad for p in model.parameters()]
    states_before = {name: optimizer.state[weight][name] for name in ("step", "exp_avg", "exp_avg_sq")}
    train(model, optimizer, 3, set_to_none=False)
    assert weight.untyped_storage().data_ptr() == storage
    assert weight.untyped_storage().nbytes() == weight.numel() * weight.element_size()
    assert all(p.grad is g for p, g in zip(model.parameters(), grads_before))
    assert all(optimizer.state[weight][name] is t for name, t in states_before.items())
    assert states_before["step"].item() == 4
    buffer = io.BytesIO()
    torch.save(model[2].state_dict(), buffer)
    assert buffer.tell() < 2 * sum(t.numel() * t.element_size() for t in model[2].state_dict().values()) + 4096


@pytest.mark.parametrize("change", ["state-tensor", "step", "clear", "param-data"])
def test_changes_from_outside_are_honoured(change):
    """Assigning a state tensor, a step counter, clearing the state or re-pointing ``param.data`` between steps: the
    next step uses what is there now, as torch.optim does."""
    results = []
    for optimizer_class in (torch.optim.AdamW, agt.AdamW):
        model = make_model()
        optimizer = optimizer_class(model.parameters(), lr=1e-2)
        train(model, optimizer, 3)
        p = model[0].weight
        if change == "state-tensor":
            optimizer.state[p]["exp_avg"] = torch.full_like(p, 0.5)
        elif change == "step":
            optimizer.state[p]["step"] = torch.tensor(0.0)
        elif change == "clear":
            optimizer.state.clear()
        else:
            p.data = p.data.clone().t().contiguous().t()  # the same values in another storage and layout
        train(model, optimizer, 3)
        results.append(flat_params(model))
    torch.testing.assert_close(results[1], results[0], rtol=1e-5, atol=1e-5)  # exp_avg = 0.5 makes steps of ~lr


def test_odd_layouts_match_torch():
    """A parameter that is not dense (a strided view), one listed twice in a group (torch steps it twice) and a
    gradient laid out unlike its parameter all give torch.optim's result."""
    results = []
    for optimizer_class in (torch.optim.AdamW, agt.AdamW):
        torch.manual_seed(5)
        base = torch.randn(6, 8)
        strided = torch.nn.Parameter(base[:, ::2])  # not dense: every other column
        twice = torch.nn.Parameter(torch.randn(5))
        transposed = torch.nn.Parameter(torch.randn(4, 3))
        optimizer = optimizer_class([strided, twice, twice, transposed], lr=1e-2)
        for k in range(4):
            optimizer.zero_grad()
            strided.grad = torch.full_like(strided, 0.1 * (k + 1))
            twice.grad = torch.linspace(-1, 1, 5)
            transposed.grad = torch.arange(12.0).reshape(3, 4).t()  # not contiguous
            optimizer.step()
        results.append([strided.detach().clone(), twice.detach().clone(), transposed.detach().clone(),
                        base.clone()])
    for ours, theirs in zip(results[1], results[0]):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_reduction_variants_are_one_call_too(monkeypatch, cache):
    """StableAdamW reduces per tensor (its RMS): one call per group keeps each tensor's sums apart, exactly as
    stepping each tensor with the generated module does."""
    import adamgen.variants

    path = adamgen.variants.__path__[0] + "/stableadamw.py"
    module = adamgen.load(path)
    model = make_model()
    expected = [p.detach().numpy().copy() for p in model.parameters()]
    optimizer = agt.Optimizer(model.parameters(), path, lr=1e-2)
    calls = record_calls(monkeypatch, module)
    optimizer.zero_grad()
    loss_of(model).backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    optimizer.step()
    assert len(calls) == 1
    monkeypatch.undo()
    for p, value, grad in zip(model.parameters(), expected, grads):
        module.step(value, grad, module.init(value), lr=1e-2)
        np.testing.assert_allclose(p.detach().numpy(), value, rtol=1e-6, atol=1e-7)


def test_state_replaced_from_outside_is_picked_up():
    """ZeroRedundancyOptimizer.load_state_dict assigns optimizer.state[p] directly; the next step must use it."""
    model = make_model()
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)
    train(model, optimizer, 2)
    p = model[0].weight
    replacement = {key: value.clone() for key, value in optimizer.state[p].items()}
    replacement["exp_avg"].fill_(1.0)
    optimizer.state[p] = replacement
    train(model, optimizer, 1)
    assert optimizer.state[p]["step"] == 3
    assert optimizer.state[p]["exp_avg"].abs().mean() > 0.5  # continued from the replacement's 1.0, not from 0


# -- classes -----------------------------------------------------------------------------------------------------------

def test_optimizer_class_binds_variant_and_options():
    cls = agt.optimizer_class("adamw", amsgrad=True)
    assert issubclass(cls, agt.Optimizer) and issubclass(cls, torch.optim.Optimizer)
    assert agt.optimizer_class("adamw", amsgrad=True) is cls
    optimizer = cls(make_model().parameters(), lr=5e-3)
    assert optimizer.defaults["amsgrad"] is True and optimizer.defaults["lr"] == 5e-3
    assert agt.AdamW.__name__ == "AdamW" and agt.NAdam(make_model().parameters()).defaults["momentum_decay"] == 4e-3


def test_user_spec_file_drives_the_optimizer(spec_file, cache):
    """A spec file's variant through the optimizer equals the generated module's functional interface per tensor."""
    model = make_model()
    start = [p.detach().numpy().copy() for p in model.parameters()]
    initial = start[0].copy()
    optimizer = agt.Optimizer(model.parameters(), variant=str(spec_file), lr=1e-3)
    assert optimizer.defaults["betas"] == (0.9, 0.999)
    optimizer.zero_grad()
    loss_of(model).backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    for _ in range(3):
        optimizer.step()
    module = adamgen.load(spec_file)
    for p, value, grad in zip(model.parameters(), start, grads):
        state = module.init(value)
        for _ in range(3):
            module.step(value, grad, state, lr=1e-3)
        np.testing.assert_array_equal(p.detach().numpy(), value)
    assert not np.array_equal(model[0].weight.detach().numpy(), initial)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    cpu, gpu = make_model(), make_model().cuda()
    train(cpu, agt.AdamW(cpu.parameters(), lr=1e-2), 5, set_to_none=False)
    optimizer = agt.AdamW(gpu.parameters(), lr=1e-2)
    global X, Y
    x, y = X, Y
    try:
        X, Y = X.cuda(), Y.cuda()
        train(gpu, optimizer, 5, set_to_none=False)
    finally:
        X, Y = x, y
    torch.testing.assert_close(flat_params(gpu).cpu(), flat_params(cpu), rtol=0, atol=1e-5)


def test_meta_device_parameters_are_not_touched_until_a_step():
    """An optimizer over parameters on the meta device (a model built there, not yet materialised) touches no data
    and creates no state; a step on meta tensors is refused naming the device, before any state is created."""
    with torch.device("meta"):
        model = torch.nn.Linear(4, 3)
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)
    assert not optimizer.state and str(optimizer)
    model.weight.grad = torch.zeros_like(model.weight)
    with pytest.raises(agt.UnsupportedTensorError, match="is on meta"):
        optimizer.step()
    assert not optimizer.state


def test_torch_compile_breaks_the_graph_once_at_the_step():
    """Under torch.compile the step is one graph break (its kernels are compiled already); torch.optim.AdamW, traced
    by dynamo, is not cheaper in breaks here."""
    import torch._dynamo

    model = make_model()
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)
    loss_of(model).backward()

    def step():
        y = model(X).sum()
        optimizer.step()
        return model(X).sum() + y

    explanation = torch._dynamo.explain(step)()
    assert explanation.graph_break_count == 1 and explanation.graph_count == 2
    assert "torch.compiler.disable" in explanation.break_reasons[0].reason
    assert optimizer.state[model[0].weight]["step"] == 1
