"""Row and column reductions (adafactor, came and a user's spec): the NumPy API's checks of row and column states, the
tile tables, and adamgen.torch against the references on a model with 1-D, 2-D and 3-D parameters, through a
checkpoint."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import adamgen
from adamgen.oracle import Oracle
from adamgen.spec import Spec, grad, param


def _module(name="adafactor"):
    return adamgen.load(name)


def test_row_and_column_states_are_float64_host_arrays_shaped_like_torchs():
    module = _module()
    shapes = {(6, 4): ((6, 1), (1, 4)), (2, 3, 5): ((2, 3, 1), (2, 1, 5)), (7,): ((1,), (7,)), (): ((1,), (1,))}
    for shape, (row, col) in shapes.items():
        state = module.init(np.zeros(shape, np.float32))
        assert state["row_var"].shape == row and state["col_var"].shape == col
        assert state["row_var"].dtype == state["col_var"].dtype == np.float64


@pytest.mark.parametrize("change, error, message", [
    (lambda s: s.__setitem__("row_var", np.zeros((3, 1))), ValueError, "has shape (3, 1); a parameter of shape (6, 4)"),
    (lambda s: s.__setitem__("col_var", np.zeros((1, 4), np.float32)), TypeError, "must be a numpy float64 array"),
    (lambda s: s.pop("col_var"), ValueError, "state['col_var'] is missing"),
    (lambda s: s.__setitem__("row_var", np.zeros((6, 2))[:, :1]), ValueError, "C-contiguous"),
])
def test_bad_row_or_column_state_raises_before_anything_is_written(change, error, message):
    module = _module()
    param = np.ones((6, 4), np.float32)
    state = module.init(param)
    module.step(param, np.ones_like(param), state)
    change(state)
    before = param.copy(), {k: np.copy(v) for k, v in state.items()}
    with pytest.raises(error) as raised:
        module.step(param, np.ones_like(param), state)
    assert message in str(raised.value)
    assert np.array_equal(param, before[0]) and state["step"] == 1
    assert all(np.array_equal(state[k], v) for k, v in before[1].items() if k in state)


def test_two_tensors_sharing_a_row_state_are_refused():
    module = _module()
    params = [np.ones((6, 4), np.float32), np.ones((6, 4), np.float32)]
    states = module.init_many(params)
    states[1]["row_var"] = states[0]["row_var"]
    with pytest.raises(ValueError, match="share memory"):
        module.step_many(params, [np.ones_like(p) for p in params], states)
    assert all(np.all(p == 1) for p in params)


def test_step_tables_checks_the_shapes_against_the_sizes():
    module = _module()
    param = np.ones((6, 4), np.float32)
    addresses = np.array([[param.ctypes.data, param.ctypes.data]], np.int64)
    with pytest.raises(ValueError, match="shapes do not match"):
        module.step_tables(addresses, [24], [0.0], {"row_var": np.zeros(6), "col_var": np.zeros(4)}, "float32",
                           [[2, 1, 5, 4]])
    assert np.all(param == 1)


@pytest.mark.parametrize("tile", [1, 3, 7, 1 << 15])
def test_tiles_cut_rows_and_columns_in_any_size_alike(tile, monkeypatch):
    """Tiles of one element, of pieces of rows, of several rows, and the default: the sums along rows and down columns
    come to the same results (float64: within a few ulps of the oracle)."""
    module = _module("came")
    monkeypatch.setattr(module, "TILE", tile)
    rng = np.random.default_rng(tile)
    shapes = [(5, 9), (3, 4, 6), (11,), (1, 13), (0, 3)]
    params = [rng.standard_normal(shape) for shape in shapes]
    exact = [p.copy() for p in params]
    oracle = Oracle(adamgen.variants.builtin("came"))
    states, exact_states = module.init_many(params), [oracle.init(p) for p in exact]
    for _ in range(5):
        grads = [rng.standard_normal(shape) for shape in shapes]
        module.step_many(params, grads, states, lr=1e-2)
        oracle.step_many(exact, grads, exact_states, lr=1e-2)
    for p, q, s, t in zip(params, exact, states, exact_states):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-13)
        for name in ("exp_avg_sq_row", "exp_avg_res_col"):
            np.testing.assert_allclose(s[name], t[name], rtol=1e-12, atol=1e-300)


def test_a_users_row_state_and_slice_mean():
    """A spec of one's own: a row state updated from a row mean, read per element with a mean over the slice."""
    spec = Spec("row_scaled_sgd")
    lr = spec.hyperparameter("lr", 0.1)
    row = spec.row_state("row_size", init=1.0)
    new = spec.update(row, spec.row_mean("size", grad**2))
    spec.update(param, param - lr * grad * spec.rows_mean("mean_size", new) / new)
    module = adamgen.load(spec)
    p = np.ones((2, 3, 2), np.float64)
    g = np.arange(12, dtype=np.float64).reshape(2, 3, 2) + 1
    state = module.init(p)
    module.step(p, g, state)
    size = (g**2).mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(state["row_size"], size, rtol=1e-15)
    np.testing.assert_allclose(p, 1 - 0.1 * g * size.mean(axis=-2, keepdims=True) / size, rtol=1e-14)


# --- adamgen.torch ---------------------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
import adamgen.torch  # noqa: E402  (after the skip: torch is optional)


class _Net(torch.nn.Module):
    """1-D biases, 2-D weights and a 3-D parameter (factored per slice)."""

    def __init__(self):
        super().__init__()
        self.first = torch.nn.Linear(12, 20)
        self.mixer = torch.nn.Parameter(torch.randn(3, 20, 20) * 0.1)
        self.last = torch.nn.Linear(20, 4)

    def forward(self, x):
        h = torch.relu(self.first(x))
        h = torch.einsum("bi,kij->bj", h, self.mixer)
        return self.last(h)


def _train(model, optimizer, steps, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 12, generator=generator, dtype=torch.float64)
        y = torch.randn(32, 4, generator=generator, dtype=torch.float64)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


@pytest.mark.torch
@pytest.mark.parametrize("variant, reference", [
    ("adafactor", lambda params: torch.optim.Adafactor(params, lr=1e-2, weight_decay=0.05, foreach=False,
                                                         eps=(float(np.finfo(np.float32).eps), 1e-3))),
    ("came", lambda params: __import__("came_pytorch").CAME(params, lr=1e-3, weight_decay=0.05)),
])
def test_torch_matches_the_reference_through_a_checkpoint(variant, reference):
    if variant == "adafactor" and not hasattr(torch.optim, "Adafactor"):
        pytest.skip("torch.optim.Adafactor needs torch >= 2.5")
    if variant == "came":
        pytest.importorskip("came_pytorch")
    torch.manual_seed(0)
    ours = _Net().double()
    theirs = copy.deepcopy(ours)
    lr = 1e-2 if variant == "adafactor" else 1e-3
    optimizer = adamgen.torch.Optimizer(ours.parameters(), variant=variant, lr=lr, weight_decay=0.05)
    expected = reference(theirs.parameters())
    _train(ours, optimizer, 15)
    saved = copy.deepcopy(optimizer.state_dict())
    optimizer = adamgen.torch.Optimizer(ours.parameters(), variant=variant, lr=lr, weight_decay=0.05)
    optimizer.load_state_dict(saved)
    row = "row_var" if variant == "adafactor" else "exp_avg_sq_row"
    assert optimizer.state[ours.mixer][row].dtype == torch.float64  # not cast to the parameter's dtype on loading
    assert optimizer.state[ours.mixer][row].shape == (3, 20, 1)
    _train(ours, optimizer, 15, seed=1)
    _train(theirs, expected, 15)
    _train(theirs, expected, 15, seed=1)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.torch
def test_torch_refuses_block_size_for_a_factored_variant():
    p = torch.nn.Parameter(torch.ones(4, 4))
    p.grad = torch.ones(4, 4)
    optimizer = adamgen.torch.Optimizer([{"params": [p], "block_size": 4}], variant="adafactor")
    with pytest.raises(adamgen.torch.UnsupportedTensorError, match="no block_size"):
        optimizer.step()
    assert torch.all(p == 1)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adafactor_class_takes_torchs_arguments(dtype):
    """adamgen.torch.Adafactor(params, lr, beta2_decay, eps=(None, eps2), d, weight_decay, maximize), eps1 from the
    parameters' dtype as torch's: the same trajectory as torch.optim.Adafactor with its defaults."""
    if not hasattr(torch.optim, "Adafactor"):
        pytest.skip("torch.optim.Adafactor needs torch >= 2.5")
    torch.manual_seed(1)
    ours = _Net().to(dtype)
    theirs = copy.deepcopy(ours)
    optimizer = adamgen.torch.Adafactor(ours.parameters(), weight_decay=0.1, maximize=True, foreach=False)
    reference = torch.optim.Adafactor(theirs.parameters(), weight_decay=0.1, maximize=True, foreach=False)
    assert optimizer.param_groups[0]["eps1"] == torch.finfo(dtype).eps
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        x, y = torch.randn(16, 12, generator=generator, dtype=dtype), torch.randn(16, 4, generator=generator, dtype=dtype)
        for model, opt in ((ours, optimizer), (theirs, reference)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, **tolerance)
    with pytest.raises(TypeError, match="eps must be a pair"):
        adamgen.torch.Adafactor(ours.parameters(), eps=1e-3)
