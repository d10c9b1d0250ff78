"""adamgen.torch under torch.distributed: DistributedDataParallel, ZeroRedundancyOptimizer, FSDP1 (per-layer wrapping,
with and without use_orig_params) and FSDP2 fully_shard (DTensor parameters and states), on two gloo processes on
127.0.0.1, each end with the parameters of a single-process torch.optim.AdamW run on the same data; runs cut by a
torch.distributed.checkpoint save and resumed by a fresh model and optimizer continue on the same trajectory.

One pair of processes runs every configuration (starting them and importing torch costs seconds); see
distributed_worker.py for the model, the data and the configurations.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.torch, pytest.mark.slow]

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

try:
    from . import distributed_worker as worker
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import distributed_worker as worker

WORLD_SIZE = 2

# adamgen's kernel and torch's AdamW round differently (adamgen computes the bias corrections on the host in float64,
# and orders the update's float32 operations its own way), a few float32 ulps per step; after 6 steps the runs differ
# by ~6e-8 (1 ulp of the largest weights, ~0.5). 1e-6 leaves room for that and for the reference's matrix products
# running on more threads, and is 4 orders of magnitude below what a lost, doubled or misplaced update costs (a step
# moves a weight by up to lr = 1e-2; a stale FSDP flat parameter left the run 4e-2 away).
TOLERANCE = 1e-6

needs_gloo = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory):
    """{configuration: {parameter name: full tensor}} from one pair of worker processes."""
    out = tmp_path_factory.mktemp("distributed")
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    processes = [subprocess.Popen([sys.executable, str(Path(worker.__file__)), str(rank), str(WORLD_SIZE), str(port),
                                   str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in range(WORLD_SIZE)]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{output}"
    return torch.load(out / "params.pt")


@pytest.fixture(scope="module")
def reference_runs():
    return worker.reference(WORLD_SIZE)


@needs_gloo
@pytest.mark.parametrize("name", list(worker.CONFIGS))
def test_matches_a_single_process_torch_adamw_run(name, distributed_runs, reference_runs):
    expected = reference_runs[name]
    got = distributed_runs[name]
    assert sorted(got) == sorted(expected)
    start = dict(worker.make_model(worker.CONFIGS[name].get("outputs", 1)).named_parameters())
    for key, want in expected.items():
        # every weight moved, by more than the tolerance: a run that skipped a parameter cannot pass
        assert (want - start[key]).abs().max() > 1e3 * TOLERANCE, key
        torch.testing.assert_close(got[key], want, rtol=0, atol=TOLERANCE, msg=lambda m: f"{name}, {key}: {m}")


@needs_gloo
def test_refuses_what_would_update_pieces_of_parameters_wrongly(distributed_runs):
    """Refused on every rank before any parameter is written (the worker checks that): a variant with per-tensor
    reductions on FSDP2's shards and FSDP1's flat parameters, and plain full-size states beside DTensor parameters."""
    messages = distributed_runs["refusals"]
    assert sorted(messages) == ["fsdp1-lamb", "fsdp2-lamb", "fsdp2-load-full-state", "fsdp2-step-full-state"]
    assert "DTensor sharded over several processes" in messages["fsdp2-lamb"]
    assert "lamb reduces over each parameter" in messages["fsdp2-lamb"]
    assert "FSDP flat parameter" in messages["fsdp1-lamb"]
    assert "exp_avg is a Tensor" in messages["fsdp2-load-full-state"]
    assert "state 'exp_avg' is a Tensor" in messages["fsdp2-step-full-state"]


@needs_gloo
def test_a_replicated_dtensor_is_whole_to_a_variant_with_reductions(distributed_runs):
    got, plain = distributed_runs["replicated-lamb"]
    assert torch.equal(got, plain)
    assert not torch.equal(plain, torch.randn(5, 3, generator=torch.Generator().manual_seed(7)))  # it was stepped
