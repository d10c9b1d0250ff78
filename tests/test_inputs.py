"""Declared per-element inputs (``Spec.input``): arrays each step is given and the rule only reads. The NumPy API's
keyword arguments and their checks, the float64 oracle, adamgen.torch's ``optimizer.state[param][name]``, and the
CUDA kernels under the simulator."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import adamgen
from adamgen import SpecError
from adamgen.oracle import Oracle
from adamgen.spec import Spec, grad, param, sqrt, validate


def preconditioned_sgd() -> Spec:
    """Momentum SGD scaled by a per-element preconditioner that each step is given."""
    spec = Spec("preconditioned_sgd", doc="Momentum SGD scaled by a given per-element preconditioner.")
    lr, beta = spec.hyperparameters(lr=1e-2, beta=0.9)
    pre = spec.input("preconditioner")
    (momentum,) = spec.states("momentum")
    new = spec.update(momentum, beta * momentum + grad / sqrt(pre + 1e-8))
    spec.update(param, param - lr * new)
    return spec


def test_an_input_is_read_never_written():
    spec = Spec("writes_its_input")
    lr = spec.hyperparameter("lr", 0.1)
    pre = spec.input("pre")
    spec.update(pre, pre * 2)
    spec.update(param, param - lr * grad)
    with pytest.raises(SpecError, match="cannot update input pre: an input is read, never written"):
        validate(spec)
    spec = Spec("reserved_input")
    spec.input("grad_i")
    spec.update(param, param - grad)
    with pytest.raises(SpecError, match="reserved"):
        validate(spec)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kernels_read_the_input_as_the_oracle_does(dtype):
    module, oracle = adamgen.load(preconditioned_sgd()), Oracle(preconditioned_sgd())
    assert module.INPUTS == ("preconditioner",) and module.STATES == ("momentum",)
    rng = np.random.default_rng(0)
    shapes = [(5, 7), (40_000,), (0,), ()]  # the second above the CPU kernels' parallel threshold
    params = [np.asarray(rng.standard_normal(shape), dtype) for shape in shapes]
    exact = [p.astype(np.float64) for p in params]
    states, exact_states = module.init_many(params), [oracle.init(p) for p in exact]
    for _ in range(10):
        grads = [np.asarray(rng.standard_normal(shape), dtype) for shape in shapes]
        given = [np.asarray(rng.random(shape) + 0.5, dtype) for shape in shapes]
        module.step_many(params, grads, states, preconditioner=given)
        oracle.step_many(exact, [g.astype(np.float64) for g in grads], exact_states,
                         preconditioner=[g.astype(np.float64) for g in given])
        module.step(params[0], grads[0], states[0], preconditioner=given[0], lr=0.1)
        oracle.step(exact[0], grads[0].astype(np.float64), exact_states[0], preconditioner=given[0].astype(np.float64),
                    lr=0.1)
    tolerance = dict(rtol=1e-13, atol=1e-14) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    for p, q, s, t in zip(params, exact, states, exact_states):
        np.testing.assert_allclose(p, q, **tolerance)
        np.testing.assert_allclose(s["momentum"], t["momentum"], **tolerance)
    assert np.abs(params[1] - exact[1]).max() < 1e-3 < np.abs(exact[1]).max()


def test_bad_inputs_raise_before_anything_is_written():
    module = adamgen.load(preconditioned_sgd())
    params = [np.ones((4, 3), np.float32), np.ones(5, np.float32)]
    grads = [np.ones_like(p) for p in params]
    states = module.init_many(params)
    given = [np.ones_like(p) for p in params]
    cases = [
        (lambda: module.step(params[0], grads[0], states[0]), TypeError,
         "the input preconditioner is missing: pass preconditioner=an array shaped like param"),
        (lambda: module.step_many(params, grads, states, preconditioner=given[:1]), ValueError,
         "the input preconditioner has 1 arrays for 2 tensors"),
        (lambda: module.step_many(params, grads, states, preconditioner=given[0]), TypeError,
         "must be a sequence of one array per tensor"),
        (lambda: module.step(params[0], grads[0], states[0], preconditioner=np.ones(12, np.float32)), ValueError,
         "preconditioner has shape (12,), param has shape (4, 3)"),
        (lambda: module.step(params[0], grads[0], states[0], preconditioner=params[0]), ValueError,
         "preconditioner overlaps param in memory"),
        (lambda: module.step_many(params, grads, states, preconditioner=[given[0], states[1]["momentum"]]), ValueError,
         "overlaps"),
    ]
    for call, error, message in cases:
        with pytest.raises(error) as raised:
            call()
        assert message in str(raised.value)
        assert all(np.all(p == 1) for p in params) and all(s["step"] == 0 for s in states)
    read_only = np.ones((4, 3), np.float32)
    read_only.flags.writeable = False  # an input is only read: a read-only array is fine, and one shared by two too
    module.step_many(params, grads, states, preconditioner=[read_only, given[1]])
    module.step(params[1], grads[1], states[1], preconditioner=grads[1])
    assert states[0]["step"] == 1 and states[1]["step"] == 2


def test_cuda_kernels_under_the_simulator():
    """The CUDA module of the spec, run by numba's CUDA simulator in a fresh process: the same values as the CPU
    kernels (float32, three steps, step and step_many), and the missing input refused."""
    script = textwrap.dedent("""
        import json, numpy as np
        from numba import cuda
        import adamgen
        from test_inputs import preconditioned_sgd
        gpu, cpu = adamgen.load(preconditioned_sgd(), target="cuda"), adamgen.load(preconditioned_sgd())
        rng = np.random.default_rng(1)
        shapes = [(37,), (3, 4), (0,)]
        starts = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        host = [s.copy() for s in starts]
        device = [cuda.to_device(s) for s in starts]
        hs, ds = cpu.init_many(host), gpu.init_many(device)
        for _ in range(3):
            grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
            given = [rng.random(s).astype(np.float32) + 0.5 for s in shapes]
            cpu.step_many(host, grads, hs, preconditioner=given)
            gpu.step_many(device, [cuda.to_device(g) for g in grads], ds,
                          preconditioner=[cuda.to_device(g) for g in given])
            cpu.step(host[0], grads[0], hs[0], preconditioner=given[0])
            gpu.step(device[0], cuda.to_device(grads[0]), ds[0], preconditioner=cuda.to_device(given[0]))
        worst = max(float(np.abs(d.copy_to_host() - h).max(initial=0)) for d, h in zip(device, host))
        try:
            gpu.step(device[0], cuda.to_device(grads[0]), ds[0])
            missing = ""
        except TypeError as error:
            missing = str(error)
        print(json.dumps({"worst": worst, "missing": missing}))
    """)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    import json
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["worst"] <= 1e-6
    assert "the input preconditioner is missing" in found["missing"]


torch = pytest.importorskip("torch")
import adamgen.torch  # noqa: E402  (after the skip: torch is optional)


@pytest.mark.torch
def test_torch_reads_inputs_from_the_optimizer_state():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3).double()
    optimizer = adamgen.torch.Optimizer(model.parameters(), variant=preconditioned_sgd(), lr=0.1)
    expected = [p.detach().clone() for p in model.parameters()]
    momenta = [torch.zeros_like(p) for p in expected]
    x = torch.randn(8, 6, dtype=torch.float64)
    model(x).sum().backward()
    with pytest.raises(ValueError, match=r"input 'preconditioner' is not set: put a tensor shaped like the parameter "
                                         r"at optimizer.state\[param\]\['preconditioner'\]"):
        optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), expected))
    for _ in range(5):
        for p in model.parameters():
            optimizer.state[p]["preconditioner"] = torch.rand_like(p) + 0.5
        optimizer.zero_grad()
        model(x).sum().backward()
        with torch.no_grad():
            for k, p in enumerate(model.parameters()):
                momenta[k] = 0.9 * momenta[k] + p.grad / torch.sqrt(optimizer.state[p]["preconditioner"] + 1e-8)
                expected[k] = expected[k] - 0.1 * momenta[k]
        optimizer.step()
    for p, q in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), q, rtol=1e-12, atol=1e-13)
