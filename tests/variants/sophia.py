"""SophiaG: the authors' SophiaG (``sophia-opt``), one tensor per optimizer, with a Hessian update every ten steps
(adamgen's ``hessian_step=True`` call, the reference's ``update_hessian()``); test_sophia.py drives adamgen.torch's
SophiaG against it over a model."""

import pytest

from ._references import TorchReference
from ._schema import Case, VariantTests


class SophiaOpt(TorchReference):
    """sophia_opt.SophiaG on one tensor; ``bs`` goes to its ``step``, ``hessian_step=True`` calls ``update_hessian()``
    with the gradient given."""

    def make(self, tensor, h):
        sophia_opt = pytest.importorskip("sophia_opt")
        h.pop("maximize", None)  # TorchReference.step hands it -grad
        h.pop("hessian_step", None)
        self.bs = h.pop("bs", 5120)
        betas = (h.pop("beta1", 0.965), h.pop("beta2", 0.99))
        return sophia_opt.SophiaG([tensor], betas=betas, **h)

    def step(self, param, grad, state, **hyperparameters):
        if not hyperparameters.get("hessian_step"):
            optimizer = state["optimizer"]
            original = optimizer.step
            optimizer.step = lambda: original(bs=self.bs)
            try:
                return super().step(param, grad, state, **hyperparameters)
            finally:
                del optimizer.step
        state["tensor"].grad = self.torch.from_numpy(grad.astype("float64"))
        state["optimizer"].update_hessian()
        state["step"] += 1  # as adamgen's step counter, which counts both kinds of call

    def states(self, state):
        s = self.optimizer_state(state)
        return {"exp_avg": s["exp_avg"].numpy(), "hessian": s["hessian"].numpy()}


VARIANT = VariantTests("sophia", cases=(
    Case("sophia-defaults", SophiaOpt, dict(lr=1e-2, bs=10.0), periodic={"hessian_step": 10}),
    Case("sophia-decay", SophiaOpt, dict(lr=3e-3, bs=100.0, rho=0.1, weight_decay=0.2, maximize=True),
         schedule=True, periodic={"hessian_step": 10}),
))
