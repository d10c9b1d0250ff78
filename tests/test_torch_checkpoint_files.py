"""Checkpoint files written after adamgen.torch steps hold every weight at its own size: the optimizer leaves each
parameter, gradient and state in memory of its own (no shared buffer), so safetensors' save_model/save_file,
torch.save of a (sub)module's state_dict and accelerate's save_state write each tensor's own bytes, and share storage
only where the model itself does (tied weights)."""

from __future__ import annotations

import json
import struct

import pytest

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import adamgen.torch  # noqa: E402


class TiedModel(torch.nn.Module):
    """A small language model whose output layer shares the embedding's weight, as many do."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(11, 6)
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.Tanh(), torch.nn.LayerNorm(7),
                                        torch.nn.Linear(7, 6))
        self.head = torch.nn.Linear(6, 11, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        return self.head(self.body(self.embed(tokens)))


def make_model():
    torch.manual_seed(0)
    return TiedModel()


def train(model, optimizer, steps=3, backward=None):
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        optimizer.zero_grad(set_to_none=step % 2 == 0)  # both: gradients replaced, and accumulated in place
        tokens = torch.randint(0, 11, (4, 5), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        (backward or torch.Tensor.backward)(loss)
        optimizer.step()


def trained():
    model = make_model()
    start = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = adamgen.torch.AdamW(model.parameters(), lr=1e-2)
    train(model, optimizer)
    assert all(not torch.equal(value, start[name]) for name, value in model.state_dict().items())  # it trained
    return model, optimizer


def storage_groups(tensors: dict) -> list:
    """The names of the tensors, grouped by the storage they live in."""
    groups: dict = {}
    for name, tensor in tensors.items():
        groups.setdefault(tensor.untyped_storage().data_ptr(), []).append(name)
    return sorted(sorted(names) for names in groups.values())


def assert_own_sizes(tensors: dict, where: str):
    """Every tensor's storage holds exactly its own elements."""
    for name, tensor in tensors.items():
        stored, own = tensor.untyped_storage().nbytes(), tensor.numel() * tensor.element_size()
        assert stored == own, f"{where}: {name} lives in {stored} bytes, its own size is {own}"


def safetensors_sizes(path):
    """{name: bytes stored} of a safetensors file, and the bytes its tensors' data take in all."""
    with open(path, "rb") as file:
        header_size = struct.unpack("<Q", file.read(8))[0]
        header = json.loads(file.read(header_size))
        data = len(file.read())
    header.pop("__metadata__", None)
    return {name: entry["data_offsets"][1] - entry["data_offsets"][0] for name, entry in header.items()}, data


def unique_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers())


def test_parameters_and_states_keep_memory_of_their_own():
    model, optimizer = trained()
    state = model.state_dict()
    assert storage_groups(state) == storage_groups(make_model().state_dict())  # the tie, and nothing else
    assert ["embed.weight", "head.weight"] in storage_groups(state)
    assert_own_sizes(state, "parameter")
    assert_own_sizes({f"{p}.grad": p.grad for p in model.parameters()}, "gradient")
    for k, entry in enumerate(optimizer.state.values()):
        assert_own_sizes({f"{k}.{name}": v for name, v in entry.items() if name != "step"}, "state")


def test_safetensors_files_hold_every_weight_at_its_own_size(tmp_path):
    model, _ = trained()
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_model(model, str(path))
    sizes, data = safetensors_sizes(path)
    state = model.state_dict()
    assert sorted(sizes) in (sorted(set(state) - {"head.weight"}), sorted(set(state) - {"embed.weight"}))
    assert all(size == state[name].numel() * state[name].element_size() for name, size in sizes.items())
    assert data == unique_bytes(model)
    fresh = make_model()
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    missing, unexpected = safetensors_torch.load_model(fresh, str(path))
    assert not missing and not unexpected
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, state[name]), name

    # a submodule's state dict: no tensor shares memory, so save_file takes it as it is
    body = model.body.state_dict()
    path = tmp_path / "body.safetensors"
    safetensors_torch.save_file(body, str(path))
    sizes, data = safetensors_sizes(path)
    assert sizes == {name: value.numel() * value.element_size() for name, value in body.items()}
    assert data == unique_bytes(model.body)
    loaded = safetensors_torch.load_file(str(path))
    assert sorted(loaded) == sorted(body) and all(torch.equal(loaded[name], body[name]) for name in body)


def test_torch_save_of_a_state_dict_holds_every_weight_at_its_own_size(tmp_path):
    model, optimizer = trained()
    torch.save(model.body.state_dict(), tmp_path / "body.pt")
    loaded = torch.load(tmp_path / "body.pt")
    assert_own_sizes(loaded, "torch.save(body.state_dict())")
    assert all(torch.equal(loaded[name], value) for name, value in model.body.state_dict().items())

    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt")
    assert storage_groups(loaded) == storage_groups(model.state_dict())
    assert_own_sizes(loaded, "torch.save(model.state_dict())")

    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    for k, entry in torch.load(tmp_path / "optimizer.pt")["state"].items():
        assert_own_sizes({f"{k}.{name}": v for name, v in entry.items()}, "torch.save(optimizer.state_dict())")


def test_accelerate_save_state_holds_every_weight_at_its_own_size(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    model = make_model()
    optimizer = adamgen.torch.AdamW(model.parameters(), lr=1e-2)
    accelerator = accelerate.Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    train(model, optimizer, backward=accelerator.backward)
    accelerator.save_state(str(tmp_path))
    sizes, data = safetensors_sizes(tmp_path / "model.safetensors")
    state = model.state_dict()
    assert sorted(sizes) in (sorted(set(state) - {"head.weight"}), sorted(set(state) - {"embed.weight"}))
    assert data == unique_bytes(model)
    saved = torch.load(tmp_path / "optimizer.bin")
    assert len(saved["state"]) == len(list(model.parameters()))
    for k, entry in saved["state"].items():
        assert_own_sizes({f"{k}.{name}": v for name, v in entry.items()}, "accelerate's optimizer.bin")

    # and it resumes: a fresh model and optimizer loaded from it take the same next steps as the original
    fresh = make_model()
    fresh_optimizer = adamgen.torch.AdamW(fresh.parameters(), lr=1e-2)
    resumer = accelerate.Accelerator(cpu=True)
    fresh, fresh_optimizer = resumer.prepare(fresh, fresh_optimizer)
    resumer.load_state(str(tmp_path))
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, state[name]), name
    train(model, optimizer, backward=accelerator.backward)
    train(fresh, fresh_optimizer, backward=resumer.backward)
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name
