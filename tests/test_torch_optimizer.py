"""adamgen.torch.Optimizer against torch.optim: trajectories, param groups, schedulers, checkpoints both ways,
zero-copy, the flat many-tensor mode and its fallbacks, and the errors it raises."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import adamgen  # noqa: E402
import adamgen.torch as agt  # noqa: E402

# (adamgen variant, options, torch class, extra torch/adamgen keyword arguments)
EQUIVALENT = [
    ("adam", {}, torch.optim.Adam, {"weight_decay": 0.1}),
    ("adam", {"amsgrad": True}, torch.optim.Adam, {}),
    ("adamw", {}, torch.optim.AdamW, {"maximize": True}),
    ("adamw", {"amsgrad": True}, torch.optim.AdamW, {"weight_decay": 0.05}),
    ("adamax", {}, torch.optim.Adamax, {"weight_decay": 0.01}),
    ("nadam", {}, torch.optim.NAdam, {"weight_decay": 0.01}),
    ("nadam", {"decoupled_weight_decay": True}, torch.optim.NAdam, {"weight_decay": 0.1}),
    ("radam", {}, torch.optim.RAdam, {}),
    ("radam", {"decoupled_weight_decay": True}, torch.optim.RAdam, {"weight_decay": 0.1}),
]
IDS = [name + "".join(f"-{o}" for o in options) for name, options, _, _ in EQUIVALENT]


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


def count_kernel_calls(monkeypatch, module):
    calls = []
    original = module.step

    def counting(param, grad, state, **hyperparameters):
        calls.append((param, grad, dict(state)))
        return original(param, grad, state, **hyperparameters)

    monkeypatch.setattr(module, "step", counting)
    return calls


# -- trajectories against torch.optim ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-tensor"])
@pytest.mark.parametrize("name,options,torch_class,extra", EQUIVALENT, ids=IDS)
def test_matches_torch_optim(name, options, torch_class, extra, flat):
    reference, ours = make_model(), make_model()
    hyperparameters = {"lr": 1e-2, "betas": (0.8, 0.99), **extra}
    train(reference, torch_class(reference.parameters(), **hyperparameters, **options), 25)
    optimizer = agt.Optimizer(ours.parameters(), name, flat=flat, **options, **hyperparameters)
    train(ours, optimizer, 25)
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)


def test_flat_and_per_tensor_modes_agree_exactly():
    results = []
    for flat in (True, False):
        model = make_model()
        train(model, agt.Optimizer(model.parameters(), "nadam", flat=flat, lr=1e-2, weight_decay=0.01), 12)
        results.append(flat_params(model))
    assert torch.equal(results[0], results[1])


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
    original = module.step
    monkeypatch.setattr(module, "step", lambda *a, **h: (seen.append((h["lr"], h["beta1"])), original(*a, **h)))
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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, torch.complex64])
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


@pytest.mark.parametrize("name,options,torch_class,extra", [EQUIVALENT[3], EQUIVALENT[4], EQUIVALENT[6]],
                         ids=[IDS[3], IDS[4], IDS[6]])
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


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-tensor"])
def test_checkpoint_round_trip_continues_the_same_trajectory(flat):
    straight = make_model()
    train(straight, agt.NAdam(straight.parameters(), lr=1e-2, flat=flat), 10, set_to_none=False)

    first = make_model()
    optimizer = agt.NAdam(first.parameters(), lr=1e-2, flat=flat)
    train(first, optimizer, 5, set_to_none=False)
    checkpoint = through_bytes({"model": first.state_dict(), "optimizer": optimizer.state_dict()})
    train(first, optimizer, 2)  # must not disturb the checkpoint

    resumed = make_model(seed=7)
    resumed.load_state_dict(checkpoint["model"])
    optimizer = agt.NAdam(resumed.parameters(), lr=1e-2, flat=flat)
    optimizer.load_state_dict(checkpoint["optimizer"])
    train(resumed, optimizer, 5, set_to_none=False)
    assert torch.equal(flat_params(resumed), flat_params(straight))


@pytest.mark.parametrize("name,options,torch_class,extra", [EQUIVALENT[2], EQUIVALENT[3], EQUIVALENT[5],
                                                             EQUIVALENT[4]], ids=[IDS[2], IDS[3], IDS[5], IDS[4]])
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


# -- zero copy and the flat many-tensor mode ---------------------------------------------------------------------------

def test_cpu_tensors_are_updated_in_place_without_copies(monkeypatch):
    model = make_model()
    params = list(model.parameters())
    addresses = [p.data_ptr() for p in params]
    optimizer = agt.AdamW(params, lr=1e-2, flat=False)
    calls = count_kernel_calls(monkeypatch, adamgen.load("adamw"))
    train(model, optimizer, 3)
    assert [p.data_ptr() for p in params] == addresses  # per-tensor mode never moves a parameter
    assert len(calls) == 3 * len(params)
    for (param, grad, state), p in zip(calls[-len(params):], params):
        assert param.__array_interface__["data"][0] == p.data_ptr()
        assert grad.__array_interface__["data"][0] == p.grad.data_ptr()
        assert state["exp_avg"].__array_interface__["data"][0] == optimizer.state[p]["exp_avg"].data_ptr()


def test_flat_mode_is_one_call_per_group_and_zero_copy(monkeypatch):
    model = make_model()
    params = list(model.parameters())
    optimizer = agt.AdamW(params, lr=1e-2)
    calls = count_kernel_calls(monkeypatch, adamgen.load("adamw"))
    train(model, optimizer, 1)
    addresses = [p.data_ptr() for p in params]
    itemsize = params[0].element_size()
    assert all(b - a == p.numel() * itemsize for a, b, p in zip(addresses, addresses[1:], params))  # end to end
    calls.clear()
    train(model, optimizer, 4, set_to_none=False)
    assert len(calls) == 4
    assert [p.data_ptr() for p in params] == addresses
    param, grad, state = calls[-1]
    assert param.size == sum(p.numel() for p in params)
    assert param.__array_interface__["data"][0] == params[0].data_ptr()
    assert grad.__array_interface__["data"][0] == params[0].grad.data_ptr()
    assert state["exp_avg"].__array_interface__["data"][0] == optimizer.state[params[0]]["exp_avg"].data_ptr()


def test_flat_mode_falls_back_per_tensor_when_gradients_are_replaced(monkeypatch):
    reference, ours = make_model(), make_model()
    train(reference, torch.optim.AdamW(reference.parameters(), lr=1e-2), 6, set_to_none=True)
    optimizer = agt.AdamW(ours.parameters(), lr=1e-2)
    calls = count_kernel_calls(monkeypatch, adamgen.load("adamw"))
    train(ours, optimizer, 6, set_to_none=True)
    assert len(calls) == 1 + 5 * len(list(ours.parameters()))  # first step: gradients adopted; later: fresh ones
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)


def test_flat_mode_after_add_param_group_and_load_state_dict(monkeypatch):
    reference, ours = make_model(), make_model()
    torch_optimizer = torch.optim.AdamW(reference[0].parameters(), lr=1e-2)
    optimizer = agt.AdamW(ours[0].parameters(), lr=1e-2)
    calls = count_kernel_calls(monkeypatch, adamgen.load("adamw"))
    for model, opt in ((reference, torch_optimizer), (ours, optimizer)):
        train(model, opt, 3, set_to_none=False)
        opt.add_param_group({"params": (p for m in (model[2], model[4]) for p in m.parameters()), "lr": 2e-2})
        train(model, opt, 3, set_to_none=False)
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)
    calls.clear()
    train(ours, optimizer, 2, set_to_none=False)
    assert len(calls) == 2 * 2  # one call per group

    optimizer.load_state_dict(copy.deepcopy(torch_optimizer.state_dict()))
    ours.load_state_dict(reference.state_dict())
    train(reference, torch_optimizer, 3, set_to_none=False)
    calls.clear()
    train(ours, optimizer, 3, set_to_none=False)
    assert len(calls) == 3 * 2  # the loaded state is laid out anew around the parameters, still one call per group
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)


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


def test_reduction_variants_are_never_flattened(monkeypatch, cache):
    """StableAdamW's per-tensor RMS would change if tensors were updated as one: the optimizer calls it per tensor."""
    import adamgen.variants

    path = adamgen.variants.__path__[0] + "/stableadamw.py"
    module = adamgen.load(path)
    model = make_model()
    expected = [p.detach().numpy().copy() for p in model.parameters()]
    optimizer = agt.Optimizer(model.parameters(), path, lr=1e-2)
    calls = count_kernel_calls(monkeypatch, module)
    optimizer.zero_grad()
    loss_of(model).backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    optimizer.step()
    assert len(calls) == len(expected)
    monkeypatch.undo()
    for p, value, grad in zip(model.parameters(), expected, grads):
        module.step(value, grad, module.init(value), lr=1e-2)
        np.testing.assert_array_equal(p.detach().numpy(), value)


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


def test_flat_gradient_buffer_is_released_once_gradients_are_replaced():
    import gc
    import weakref

    model = make_model()
    optimizer = agt.AdamW(model.parameters(), lr=1e-2)
    train(model, optimizer, 1)
    block = optimizer._layouts[id(optimizer.param_groups[0])].blocks[0]
    buffer = weakref.ref(block.grad_flat)
    train(model, optimizer, 1, set_to_none=True)  # autograd allocates new gradients; the buffer serves nothing now
    gc.collect()
    assert block.grad_flat is None and buffer() is None


def test_tensor_passing_path_used_for_cuda(monkeypatch):
    """Without a GPU: run the CUDA code path's plumbing (the kernel gets 1-D torch tensors, not numpy arrays) on the
    CPU, with a stand-in module that checks what a CUDA module receives and runs the CPU kernel on it."""
    cpu_module = adamgen.load("adamw")
    received = []

    class TensorModule:
        STATES, SCALAR_STATES, HYPERPARAMETERS = cpu_module.STATES, cpu_module.SCALAR_STATES, cpu_module.HYPERPARAMETERS

        @staticmethod
        def step(param, grad, state, stream=None, **hyperparameters):
            arrays = [param, grad] + [state[name] for name in cpu_module.STATES]
            assert all(isinstance(a, torch.Tensor) and a.dim() == 1 and a.numel() == param.numel() for a in arrays)
            assert stream is None  # the CUDA module then launches on torch's current stream
            received.append(param.numel())
            numpy_state = {**state, **{name: state[name].numpy() for name in cpu_module.STATES}}
            cpu_module.step(param.numpy(), grad.numpy(), numpy_state, **hyperparameters)
            state["step"] = numpy_state["step"]

    monkeypatch.setattr(agt, "_elementwise", lambda module: True)
    monkeypatch.setattr(agt._Block, "_array", lambda self, tensor: tensor.detach().reshape(-1))
    reference, ours = make_model(), make_model()
    train(reference, torch.optim.AdamW(reference.parameters(), lr=1e-2), 6)
    optimizer = agt.AdamW(ours.parameters(), lr=1e-2)
    optimizer._modules[("cpu", ())] = TensorModule
    optimizer._init_values[()] = {name: 0.0 for name in cpu_module.STATES}
    train(ours, optimizer, 6)
    assert received[0] == sum(p.numel() for p in ours.parameters())  # first step: one call over the flat buffers
    torch.testing.assert_close(flat_params(ours), flat_params(reference), rtol=0, atol=1e-5)
