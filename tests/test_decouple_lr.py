"""The ``decouple_lr`` option (optimi's fully decoupled weight decay: decay lr/max_lr * weight_decay per step): its
defaults, its decay and where it is refused. The built-ins that ship with it are held against torch-optimi's
``decouple_lr=True`` and the float64 oracle in test_catalogue.py, from their files in tests/variants/."""

import numpy as np
import pytest

import adamgen
from adamgen.errors import SpecError
from adamgen.variants import builtin, with_options


def test_max_lr_defaults_to_the_default_lr():
    for name in ("adamw", "lion", "adan", "stableadamw"):
        defaults = adamgen.load(name, decouple_lr=True).HYPERPARAMETERS
        assert defaults["max_lr"] == adamgen.load(name).HYPERPARAMETERS["lr"] == defaults["lr"], name


def test_decay_scales_with_lr_over_max_lr():
    """With zero gradients AdamW's step is pure decay: param * (1 - lr/max_lr * weight_decay), whatever lr's size."""
    module = adamgen.load("adamw", decouple_lr=True)
    for lr, max_lr in ((1e-3, 1e-3), (1e-1, 1e-1), (5e-2, 1e-1)):
        param = np.full(3, 2.0)
        module.step(param, np.zeros(3), module.init(param), lr=lr, max_lr=max_lr, weight_decay=0.25)
        np.testing.assert_allclose(param, 2.0 * (1 - lr / max_lr * 0.25), rtol=1e-15)


def test_coupled_decay_is_refused():
    with pytest.raises(SpecError, match="weight_decay reaches the update of exp_avg, exp_avg_sq.*"
                                        "decoupled_weight_decay first"):
        with_options(builtin("adam"), decouple_lr=True)
    nadamw = with_options(builtin("nadam"), decoupled_weight_decay=True, decouple_lr=True)
    assert nadamw.name == "nadamw_decouple_lr" and "max_lr" in {h.name for h, _ in nadamw.hyperparameters}
