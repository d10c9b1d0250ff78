"""One rank of the distributed tests (run as a script by test_distributed.py), and the single-process reference.

    python distributed_worker.py RANK WORLD_SIZE PORT OUT

Trains the same tiny model three ways on a gloo process group on 127.0.0.1: DistributedDataParallel with
adamgen.torch.AdamW, and ZeroRedundancyOptimizer with optimizer_class=adamgen.torch.optimizer_class("adamw",
amsgrad=True), with and without parameters_as_bucket_view. Rank 0 saves the final parameters of each to OUT.
"""

from __future__ import annotations

import sys

import torch

STEPS = 6
BATCH = 32


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 12), torch.nn.Tanh(),
                               torch.nn.Linear(12, 2))


def batch(step, rank, world_size):
    """Step `step`'s data for `rank`: the rank's shard of one global batch."""
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.randn(BATCH * world_size, 6, generator=generator)
    y = torch.randint(0, 2, (BATCH * world_size,), generator=generator)
    return x[rank * BATCH:(rank + 1) * BATCH], y[rank * BATCH:(rank + 1) * BATCH]


def loss_of(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y)


CONFIGS = {  # name -> (optimizer factory given the parameters, uses ZeRO)
    "ddp": dict(zero=False, options={}),
    "zero": dict(zero=True, options={"amsgrad": True}, bucket=False),
    "zero-bucket-view": dict(zero=True, options={"amsgrad": True}, bucket=True),
}


def reference(world_size):
    """The single-process run: gradients of every shard, averaged as DDP averages them (each divided by the world size,
    then summed), stepped by one adamgen optimizer."""
    import adamgen.torch

    results = {}
    for name, config in CONFIGS.items():
        model = make_model()
        optimizer = adamgen.torch.AdamW(model.parameters(), lr=1e-2, **config["options"])
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
        results[name] = [p.detach().clone() for p in model.parameters()]
    return results


def main(rank, world_size, port, out):
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    import adamgen.torch

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    results = {}
    for name, config in CONFIGS.items():
        model = make_model()
        ddp = DistributedDataParallel(model)
        if config["zero"]:
            optimizer = ZeroRedundancyOptimizer(
                ddp.parameters(), optimizer_class=adamgen.torch.optimizer_class("adamw", **config["options"]),
                parameters_as_bucket_view=config["bucket"], lr=1e-2)
        else:
            optimizer = adamgen.torch.AdamW(ddp.parameters(), lr=1e-2)
        for step in range(STEPS):
            optimizer.zero_grad(set_to_none=step % 2 == 0)
            loss_of(ddp, *batch(step, rank, world_size)).backward()
            optimizer.step()
        if config["zero"]:
            optimizer.consolidate_state_dict(to=0)
            if rank == 0:
                state = optimizer.state_dict()
                assert len(state["state"]) == len(list(model.parameters()))
                assert all(s["step"] == STEPS and "max_exp_avg_sq" in s for s in state["state"].values())
        results[name] = [p.detach().clone() for p in model.parameters()]
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
