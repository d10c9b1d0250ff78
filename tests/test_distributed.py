"""adamgen.torch under DistributedDataParallel and as ZeroRedundancyOptimizer's optimizer_class: two gloo processes on
127.0.0.1 end with the parameters of a single-process run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

try:
    from . import distributed_worker as worker
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import distributed_worker as worker

WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_ddp_and_zero_match_a_single_process_run(tmp_path):
    out = tmp_path / "params.pt"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    processes = [subprocess.Popen([sys.executable, str(Path(worker.__file__)), str(rank), str(WORLD_SIZE), str(port),
                                   str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in range(WORLD_SIZE)]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=180)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{output}"

    distributed = torch.load(out)
    expected = worker.reference(WORLD_SIZE)
    start = [p.detach() for p in worker.make_model().parameters()]
    for name, params in expected.items():
        assert any(not torch.equal(a, b) for a, b in zip(params, start)), name  # the run moved the parameters
        for got, want in zip(distributed[name], params):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-7, msg=name)
