"""adamgen.torch.SophiaG against the authors' SophiaG (``sophia-opt``) on a model, with the reference's training loop:
a step with the loss's gradients, and every ten steps ``update_hessian()`` with the gradients of the loss on labels
sampled from the model's own outputs (the Gauss-Newton-Bartlett estimator)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sophia_opt = pytest.importorskip("sophia_opt")
import adamgen.torch  # noqa: E402  (after the check that torch is installed)

pytestmark = pytest.mark.torch


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))


def _train(model, optimizer, steps, bs):
    """The reference's loop (its README): step every iteration, update_hessian every tenth, on fixed data."""
    generator = torch.Generator().manual_seed(1)
    for k in range(steps):
        x = torch.randn(32, 12, generator=generator)
        y = torch.randint(0, 5, (32,), generator=generator)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step(bs=bs)
        if k % 10 == 9:
            model.zero_grad()
            logits = model(x)
            sampled = torch.multinomial(torch.softmax(logits.detach(), -1), 1, generator=generator)[:, 0]
            torch.nn.functional.cross_entropy(logits, sampled).backward()
            optimizer.update_hessian()


def test_sophia_matches_the_reference_on_a_model():
    """60 steps and 6 Hessian updates: parameters and both states agree within float32 rounding accumulated over the
    run; update_hessian leaves the step counters (60) and every parameter as they were; the Hessian estimate moved."""
    ours_model, their_model = _model(0), _model(0)
    ours = adamgen.torch.SophiaG(ours_model.parameters(), lr=1e-2, weight_decay=0.1, rho=0.05)
    theirs = sophia_opt.SophiaG(their_model.parameters(), lr=1e-2, weight_decay=0.1, rho=0.05)
    _train(ours_model, ours, 60, bs=32)
    _train(their_model, theirs, 60, bs=32)
    for mine, reference in zip(ours_model.parameters(), their_model.parameters()):
        np.testing.assert_allclose(mine.detach().numpy(), reference.detach().numpy(), rtol=1e-4, atol=1e-5)
        for name in ("exp_avg", "hessian"):
            np.testing.assert_allclose(ours.state[mine][name].numpy(), theirs.state[reference][name].numpy(),
                                       rtol=1e-4, atol=1e-7)
        assert float(ours.state[mine]["step"]) == 60
        assert ours.state[mine]["hessian"].abs().max() > 0


def test_update_hessian_changes_nothing_else():
    model = _model(2)
    optimizer = adamgen.torch.SophiaG(model.parameters())
    model(torch.randn(4, 12)).sum().backward()
    optimizer.step()
    before = {p: (p.detach().clone(), optimizer.state[p]["exp_avg"].clone()) for p in model.parameters()}
    optimizer.update_hessian()
    for p, (value, exp_avg) in before.items():
        assert torch.equal(p.detach(), value) and torch.equal(optimizer.state[p]["exp_avg"], exp_avg)
        assert float(optimizer.state[p]["step"]) == 1
        expected = (1 - 0.99) * p.grad**2  # the first update, from zero
        torch.testing.assert_close(optimizer.state[p]["hessian"], expected, rtol=1e-6, atol=0)
