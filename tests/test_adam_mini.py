"""Adam-mini over blocks: adamgen.torch.AdamMini against the authors' Adam_mini (``adam-mini``) on a small transformer
block whose parameter names fall into every kind the reference tells apart, and the ``block_size`` of a param group
(per-tensor sums and scalar states per block) against the NumPy module stepping the blocks as tensors."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import adamgen  # noqa: E402
import adamgen.torch  # noqa: E402

pytestmark = pytest.mark.torch


class Block(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.wq = torch.nn.Linear(dim, dim, bias=False)
        self.wk = torch.nn.Linear(dim, dim, bias=False)
        self.wv = torch.nn.Linear(dim, dim)
        self.wo = torch.nn.Linear(dim, dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.mlp = torch.nn.Linear(dim, 2 * dim)


class Model(torch.nn.Module):
    """Embedding, attention (queries and keys per head), values, projection, norm, MLP, output, and a parameter of
    no kind (one block)."""

    def __init__(self, dim=16):
        super().__init__()
        self.embed = torch.nn.Embedding(10, dim)
        self.layer = Block(dim)
        self.output = torch.nn.Linear(dim, 10, bias=False)
        self.scale = torch.nn.Parameter(torch.ones(3, 4))


def _model(dtype):
    torch.manual_seed(0)
    return Model().to(dtype)


def _run(model, optimizer, steps, seed=3):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        optimizer.step()


@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float64, 1e-12, 1e-14), (torch.float32, 1e-5, 1e-6)])
def test_adam_mini_matches_the_reference_block_by_block(dtype, rtol, atol):
    """40 steps with decay: every parameter, first moment and per-block second moment agrees with Adam_mini's (its
    biases' per-element ``v``, its heads' and neurons' ``vmean``); the blocks are the reference's (4 heads of 64
    elements for wq and wk, one per row for the others of a kind, one per element for biases, one for the rest)."""
    adam_mini = pytest.importorskip("adam_mini")
    ours_model, their_model = _model(dtype), _model(dtype)
    ours = adamgen.torch.AdamMini(ours_model.named_parameters(), lr=1e-2, weight_decay=0.1, dim=16, n_heads=4)
    theirs = adam_mini.Adam_mini(their_model.named_parameters(), lr=1e-2, weight_decay=0.1, dim=16, n_heads=4,
                                 verbose=False)
    kinds = {name: (group["block_size"], group["weight_decay"]) for group in ours.param_groups
             for name in group["param_names"]}
    assert kinds["layer.wq.weight"] == (64, 0.1) and kinds["embed.weight"] == (16, 0.1)
    assert kinds["layer.mlp.bias"] == (1, 0.0) and kinds["layer.norm.weight"] == (None, 0.0)
    assert kinds["scale"] == (None, 0.1)
    _run(ours_model, ours, 40)
    _run(their_model, theirs, 40)
    for (name, mine), reference in zip(ours_model.named_parameters(), their_model.parameters()):
        np.testing.assert_allclose(mine.detach().numpy(), reference.detach().numpy(), rtol=rtol, atol=atol,
                                   err_msg=name)
        state, their_state = ours.state[mine], theirs.state[reference]
        np.testing.assert_allclose(state["exp_avg"].numpy(), their_state["m"].reshape(mine.shape).numpy(),
                                   rtol=rtol, atol=atol, err_msg=name)
        their_v = their_state["vmean"] if "vmean" in their_state else their_state["v"]
        np.testing.assert_allclose(state["vmean"].reshape(-1).numpy(), their_v.reshape(-1).numpy(), rtol=rtol,
                                   atol=atol, err_msg=name)
        assert float(state["step"]) == 40


def test_block_size_steps_each_block_as_a_tensor():
    """A param group's block_size: the same as the NumPy module's step_many over views of the blocks, each with its
    own state dict (the blocks are tensors), to the bit; a tensor of one block and an empty one included."""
    module = adamgen.load("adam_mini")
    torch.manual_seed(1)
    shapes = [(6, 8), (8,), (0,)]
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
    arrays = [p.detach().numpy().copy() for p in params]
    optimizer = adamgen.torch.Optimizer([{"params": params, "block_size": 8}], "adam_mini", lr=1e-2)
    blocks = [array.reshape(-1)[k * 8:(k + 1) * 8] for array in arrays for k in range(max(array.size // 8, 1))]
    states = module.init_many(blocks)
    for _ in range(5):
        grads = [torch.randn(shape) for shape in shapes]
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        flat = [g.numpy().reshape(-1) for g in grads]
        module.step_many(blocks, [g[k * 8:(k + 1) * 8] for g in flat for k in range(max(g.size // 8, 1))], states,
                         lr=1e-2)
    for p, array in zip(params, arrays):
        np.testing.assert_array_equal(p.detach().numpy(), array)
    assert optimizer.state[params[0]]["vmean"].shape == (6,) and optimizer.state[params[2]]["vmean"].shape == (1,)
    np.testing.assert_array_equal(optimizer.state[params[0]]["vmean"].numpy(), [s["vmean"] for s in states[:6]])


def test_block_states_survive_a_checkpoint_and_bad_blocks_are_refused():
    model = _model(torch.float32)
    optimizer = adamgen.torch.AdamMini(model.named_parameters(), lr=1e-2, dim=16, n_heads=4)
    _run(model, optimizer, 3)
    saved = copy.deepcopy(optimizer.state_dict())  # as torch.save and torch.load would give it
    twin = _model(torch.float32)
    twin.load_state_dict(model.state_dict())
    restored = adamgen.torch.AdamMini(twin.named_parameters(), lr=1e-2, dim=16, n_heads=4)
    restored.load_state_dict(saved)
    _run(model, optimizer, 3, seed=4)
    _run(twin, restored, 3, seed=4)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)

    p = torch.nn.Parameter(torch.randn(10))
    p.grad = torch.randn(10)
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"parameter 0 has 10 elements, not a multiple of its param group's "
                                         r"block_size 4"):
        adamgen.torch.Optimizer([{"params": [p], "block_size": 4}], "adam_mini").step()
    assert torch.equal(p.detach(), before)
    with pytest.raises(TypeError, match=r"block_size must be None \(one block per tensor\) or a whole number >= 1"):
        adamgen.torch.Optimizer([{"params": [p], "block_size": 0}], "adam_mini")
    names = [name for group in saved["param_groups"] for name in group["param_names"]]
    ids = [k for group in saved["param_groups"] for k in group["params"]]
    saved["state"][ids[names.index("embed.weight")]]["vmean"] = torch.zeros(3, dtype=torch.float64)  # 10 rows
    with pytest.raises(adamgen.torch.StateDictError, match=r"vmean must be a real tensor of 10 finite values"):
        adamgen.torch.AdamMini(twin.named_parameters(), dim=16, n_heads=4).load_state_dict(saved)
