"""The plumbing of the reference implementations that the variant files define: both kinds have the interface of a
generated module, ``init(param)`` and ``step(param, grad, state, **hyperparameters)`` (in place, float64), with
adamgen's hyperparameter names, and ``states(state)``, the state arrays under adamgen's names for comparison.

``NumpyReference``: a float64 NumPy transcription of a paper's pseudo-code. Nothing in one reads adamgen: defaults and
formulas are typed in again from the paper and the reference code it names, so a wrong coefficient, sign, order of
updates or default in a spec shows up as a disagreement. Where the spec deliberately follows a reference implementation
rather than the paper (bias correction, weight decay, initialisation), the class says so and does the same; the spec's
``doc`` documents the choice.

``TorchReference``: a reference package's torch optimizer, one per tensor, on float64 tensors sharing memory with the
NumPy parameter. torch and the package are imported when a test first constructs one; the test is skipped where
either is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

# Relative size below which a sign decision counts as a near tie (see NumpyReference.note_ties).
TIE = 1e-5


class NumpyReference:
    """Common plumbing: hyperparameter defaults, maximize, state creation."""

    name = ""
    defaults: dict = {}
    state_inits: dict = {}  # state name -> initial value of every element

    def init(self, param):
        state = {"step": 0, "near_tie": np.zeros(np.shape(param), bool)}
        state.update((name, np.full(np.shape(param), value, np.float64)) for name, value in self.state_inits.items())
        return state

    def step(self, param, grad, state, **hyperparameters):
        unknown = set(hyperparameters) - set(self.defaults) - {"maximize"}
        if unknown:
            raise TypeError(f"{self.name}: unknown hyperparameter(s) {sorted(unknown)}")
        h = {**self.defaults, **hyperparameters}
        g = -grad if h.pop("maximize", False) else grad
        state["step"] += 1
        self.update(param, g.astype(np.float64), state, state["step"], **h)

    def update(self, p, g, state, t, **h):
        raise NotImplementedError

    def states(self, state) -> dict:
        return {name: state[name] for name in self.state_inits}

    @staticmethod
    def note_ties(state, argument, scale):
        """Record the elements where a sign decision was taken on an argument within TIE of zero, relative to the size
        of the terms it was computed from: a float32 kernel, whose inputs carry a relative error of ~1e-6
        after 100 steps, may decide such an element the other way (Lion: a step of 2*lr; Yogi: a jump of
        2*(1-beta2)*grad^2 in exp_avg_sq). Tests excuse disagreements at those elements, and only there."""
        state["near_tie"] |= np.abs(argument) <= TIE * scale


def cautious_mask(state, update, g):
    """Liang et al., "Cautious Optimizers", arXiv:2411.16085, Algorithm 1 with timm's rescaling: phi = [u g > 0],
    divided by max(mean(phi), 1e-3). Near-zero products are recorded as near ties (the mask may flip in float32)."""
    NumpyReference.note_ties(state, update * g, np.abs(update * g) + 1e-30)
    phi = (update * g > 0).astype(np.float64)
    return phi / max(phi.mean() if phi.size else 0.0, 1e-3)


class TorchReference:
    """A torch optimizer per tensor behind the generated modules' interface, on float64 tensors sharing memory with the
    numpy parameter; subclasses say how to make it (``make``) and how to read its state (``states``). Where the package
    has no ``maximize``, it steps along -grad, as torch does. ``decouple_lr``: the adamgen option of that name is on,
    so optimi runs with ``decouple_lr=True`` and the given ``max_lr`` (optimi's default max_lr, the initial lr, when
    none is given)."""

    def __init__(self, hyperparameters, decouple_lr=False):
        self.torch = pytest.importorskip("torch")
        self.hyperparameters = dict(hyperparameters)
        self.decouple_lr = {"decouple_lr": decouple_lr, "max_lr": self.hyperparameters.pop("max_lr", None)}

    def init(self, param):
        tensor = self.torch.from_numpy(param)
        return {"step": 0, "tensor": tensor, "optimizer": self.make(tensor, dict(self.hyperparameters))}

    def step(self, param, grad, state, **hyperparameters):
        grad = -grad if hyperparameters.get("maximize") else grad
        state["tensor"].grad = self.torch.from_numpy(np.ascontiguousarray(grad, dtype=np.float64))
        for group in state["optimizer"].param_groups:
            group["lr"] = hyperparameters.get("lr", group["lr"])
        state["optimizer"].step()
        state["step"] += 1

    def make(self, tensor, h):
        raise NotImplementedError

    def states(self, state) -> dict:
        raise NotImplementedError

    def optimizer_state(self, state):
        return state["optimizer"].state[state["tensor"]]
