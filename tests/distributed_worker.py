"""One rank of the distributed tests (run as a script by test_distributed.py), and the single-process reference.

    python distributed_worker.py RANK WORLD_SIZE PORT OUT_DIR

On a gloo process group on 127.0.0.1, trains the same small model with adamgen.torch under each wrapper of CONFIGS:
DistributedDataParallel, ZeroRedundancyOptimizer (optimizer_class=adamgen.torch.optimizer_class(...)), FSDP1 with
per-layer wrapping (use_orig_params False and True), and FSDP2 fully_shard per layer and at the root; then resumes
FSDP2 and FSDP1 runs from a torch.distributed.checkpoint (DCP) save taken halfway. Rank 0 writes each run's full
(gathered) parameters, by name, to OUT_DIR/params.pt; test_distributed.py compares them with `reference`, a
single-process torch.optim.AdamW run on the same data. Under "refusals" it writes the messages of what adamgen
refuses on sharded parameters, under "replicated-lamb" a replicated DTensor and a plain tensor stepped alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

STEPS = 6
BATCH = 16
LR = 1e-2


def make_model(outputs=1):
    """Uneven sizes, so that shards are uneven or empty: FSDP1's flat parameter of the middle layer (65 elements) splits
    33/32, and with use_orig_params rank 0 holds empty views of every bias and of the LayerNorm's bias (they lie in rank
    1's half of their flat parameter); FSDP2 shards dim 0, so the (5,) LayerNorm, which stays with the root, splits
    3/2, and with one output the (1, 5) weight and the (1,) bias of the last layer are empty on rank 1."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 5), torch.nn.LayerNorm(5),
                               torch.nn.Tanh(), torch.nn.Linear(5, outputs))


def batch(step, rank, world_size):
    """Step `step`'s data for `rank`: the rank's shard of one global batch."""
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.randn(BATCH * world_size, 6, generator=generator)
    y = torch.randn(BATCH * world_size, 2, generator=generator)
    return x[rank * BATCH:(rank + 1) * BATCH], y[rank * BATCH:(rank + 1) * BATCH]


def loss_of(model, x, y):
    out = model(x)
    return torch.nn.functional.mse_loss(out, y[:, :out.shape[1]])


# name -> the wrapper, the AdamW options (the same for adamgen and the reference), whether the run is cut at step
# STEPS // 2 by a DCP save and continued by a fresh model and optimizer that load it, and the model's outputs (2 for
# FSDP1's DCP run: its sharded state dict splits each parameter along dim 0, and DCP cannot load a checkpoint of a
# parameter that some rank holds no part of, whatever the optimizer)
CONFIGS = {
    "ddp": dict(wrap="ddp", options={}),
    "zero": dict(wrap="zero", options={}),
    "zero-amsgrad-bucket-view": dict(wrap="zero-bucket-view", options={"amsgrad": True}),
    "fsdp1": dict(wrap="fsdp1", options={}),
    "fsdp1-orig-params": dict(wrap="fsdp1-orig-params", options={}),
    "fsdp2": dict(wrap="fsdp2", options={}),
    "fsdp2-dcp-resume": dict(wrap="fsdp2", options={"amsgrad": True}, resume=True),
    "fsdp1-dcp-resume": dict(wrap="fsdp1", options={}, resume=True, outputs=2),
    "fsdp1-orig-params-dcp-resume": dict(wrap="fsdp1-orig-params", options={}, resume=True, outputs=2),
}


def reference(world_size):
    """The single-process runs: torch.optim.AdamW on the gradients of every rank's shard of the batch, averaged as the
    wrappers average them (each divided by the world size, then summed: exactly the wrappers' sums for 2 ranks).
    Returns {config name: {parameter name: tensor}}."""
    results = {}
    for name, config in CONFIGS.items():
        model = make_model(config.get("outputs", 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, **config["options"])
        for step in range(STEPS):
            total = [torch.zeros_like(p) for p in model.parameters()]
            for rank in range(world_size):
                model.zero_grad()
                loss_of(model, *batch(step, rank, world_size)).backward()
                for t, p in zip(total, model.parameters()):
                    t += p.grad / world_size
            for t, p in zip(total, model.parameters()):
                p.grad = t
            optimizer.step()
        results[name] = {n: p.detach().clone() for n, p in model.named_parameters()}
    return results


def wrapped(wrap, outputs):
    """make_model(outputs) wrapped by `wrap`."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from torch.nn.parallel import DistributedDataParallel

    model = make_model(outputs)
    if wrap in ("ddp", "zero", "zero-bucket-view"):
        return DistributedDataParallel(model)
    if wrap in ("fsdp1", "fsdp1-orig-params"):
        # one FSDP unit per Linear; the root unit keeps the LayerNorm
        return FullyShardedDataParallel(model, auto_wrap_policy=ModuleWrapPolicy({torch.nn.Linear}),
                                        device_id=torch.device("cpu"), use_orig_params=wrap == "fsdp1-orig-params")
    assert wrap == "fsdp2", wrap
    mesh = init_device_mesh("cpu", (2,))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def optimizer_for(wrap, model, options):
    """The adamgen optimizer that steps the wrapped model (`options`: the AdamW options)."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    import adamgen.torch

    if wrap.startswith("zero"):
        return ZeroRedundancyOptimizer(model.parameters(), optimizer_class=adamgen.torch.optimizer_class("adamw"),
                                       parameters_as_bucket_view=wrap == "zero-bucket-view", lr=LR, **options)
    return adamgen.torch.AdamW(model.parameters(), lr=LR, **options)


def train(model, optimizer, rank, world_size, steps):
    for step in steps:
        optimizer.zero_grad(set_to_none=step % 2 == 0)
        loss_of(model, *batch(step, rank, world_size)).backward()
        optimizer.step()


def check_states(wrap, model, optimizer):
    """The optimizer's states under FSDP2 are DTensors sharded like their parameters (what DCP saves and reshards);
    elsewhere plain tensors shaped like the (local) parameter."""
    from torch.distributed.tensor import DTensor

    # FSDP1 with use_orig_params leaves a parameter outside the rank's shard an empty view without a gradient, so
    # without a state, as torch.optim would
    params = [p for p in model.parameters() if p.numel() or isinstance(p, DTensor)]
    assert len(optimizer.state) == len(params), (wrap, len(optimizer.state), len(params))
    for p in params:
        entry = optimizer.state[p]
        for name in ("exp_avg", "exp_avg_sq"):
            value = entry[name]
            if wrap == "fsdp2":
                assert isinstance(p, DTensor) and isinstance(value, DTensor), (wrap, name, type(p), type(value))
                assert value.placements == p.placements and value.device_mesh == p.device_mesh, (wrap, name)
                assert value.to_local().shape == p.to_local().shape, (wrap, name)
            else:
                assert type(value) is torch.Tensor and value.shape == p.shape, (wrap, name, type(value), value.shape)


def full_parameters(model):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {name: value.detach().clone() for name, value in state.items()}


def resumed(config, rank, world_size, directory):
    """STEPS // 2 steps, a DCP save of model and optimizer, then a fresh model and optimizer that load it and take the
    remaining steps. Returns the final model."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    wrap, options = config["wrap"], config["options"]
    model = wrapped(wrap, config.get("outputs", 1))
    optimizer = optimizer_for(wrap, model, options)
    train(model, optimizer, rank, world_size, range(STEPS // 2))
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=directory)
    del model, optimizer, model_state, optimizer_state

    model = wrapped(wrap, config.get("outputs", 1))
    optimizer = optimizer_for(wrap, model, options)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=directory)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    assert all(float(entry["step"]) == STEPS // 2 for entry in optimizer.state.values()), "step not restored"
    check_states(wrap, model, optimizer)
    train(model, optimizer, rank, world_size, range(STEPS // 2, STEPS))
    check_states(wrap, model, optimizer)
    return model


def refusals(rank, world_size):
    """What adamgen refuses on sharded parameters, before any parameter is written: {case: the error's message}."""
    import adamgen.torch

    def local(tensor):
        return tensor.to_local() if hasattr(tensor, "to_local") else tensor

    def refused(case, error_type, action, model):
        before = [local(p).detach().clone() for p in model.parameters()]
        try:
            action()
        except error_type as error:
            messages[case] = str(error)
        assert all(torch.equal(a, local(p)) for a, p in zip(before, model.parameters())), f"{case}: params written"

    messages = {}
    # LAMB's per-tensor trust ratio over FSDP2's shards or FSDP1's flat parameters would cover a piece of each tensor
    for wrap in ("fsdp2", "fsdp1"):
        model = wrapped(wrap, 1)
        optimizer = adamgen.torch.Optimizer(model.parameters(), variant="lamb", lr=LR)
        loss_of(model, *batch(0, rank, world_size)).backward()
        refused(f"{wrap}-lamb", adamgen.torch.UnsupportedTensorError, optimizer.step, model)

    # full (plain) state tensors beside sharded DTensor parameters: refused by load_state_dict, and by step
    model = wrapped("fsdp2", 1)
    optimizer = adamgen.torch.AdamW(model.parameters(), lr=LR)
    train(model, optimizer, rank, world_size, range(1))
    saved = optimizer.state_dict()
    full = {"state": {k: {**entry, "exp_avg": entry["exp_avg"].full_tensor()} for k, entry in saved["state"].items()},
            "param_groups": saved["param_groups"]}
    refused("fsdp2-load-full-state", adamgen.torch.StateDictError, lambda: optimizer.load_state_dict(full), model)
    assert all(type(entry["exp_avg"]) is not torch.Tensor for entry in optimizer.state.values()), "state replaced"
    loss_of(model, *batch(1, rank, world_size)).backward()
    first = next(iter(model.parameters()))
    optimizer.state[first]["exp_avg"] = optimizer.state[first]["exp_avg"].full_tensor()
    refused("fsdp2-step-full-state", ValueError, optimizer.step, model)
    return messages


def replicated(rank, world_size):
    """LAMB on a DTensor replicated over the mesh (each process holds it whole, so it is not refused) and on the same
    plain tensor: (the DTensor's local tensor, the plain tensor) after two steps."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, distribute_tensor

    import adamgen.torch

    mesh = init_device_mesh("cpu", (world_size,))
    generator = torch.Generator().manual_seed(7)
    start, grads = torch.randn(5, 3, generator=generator), torch.randn(2, 5, 3, generator=generator)
    dtensor = torch.nn.Parameter(distribute_tensor(start.clone(), mesh, [Replicate()]))
    plain = torch.nn.Parameter(start.clone())
    for p, wrap in ((dtensor, lambda t: distribute_tensor(t, mesh, [Replicate()])), (plain, lambda t: t)):
        optimizer = adamgen.torch.Optimizer([p], variant="lamb", lr=LR)
        for grad in grads:
            p.grad = wrap(grad.clone())
            optimizer.step()
    return dtensor.to_local().detach().clone(), plain.detach().clone()


def main(rank, world_size, port, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    out_dir = Path(out_dir)
    results = {}
    for name, config in CONFIGS.items():
        if config.get("resume"):
            model = resumed(config, rank, world_size, out_dir / name)
        else:
            model = wrapped(config["wrap"], config.get("outputs", 1))
            optimizer = optimizer_for(config["wrap"], model, config["options"])
            train(model, optimizer, rank, world_size, range(STEPS))
            if config["wrap"].startswith("zero"):
                optimizer.consolidate_state_dict(to=0)
                if rank == 0:
                    state = optimizer.state_dict()
                    assert len(state["state"]) == len(list(model.parameters()))
                    assert all(s["step"] == STEPS for s in state["state"].values())
            else:
                check_states(config["wrap"], model, optimizer)
        results[name] = full_parameters(model)
    results["refusals"] = refusals(rank, world_size)
    results["replicated-lamb"] = replicated(rank, world_size)
    if rank == 0:
        torch.save(results, out_dir / "params.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
