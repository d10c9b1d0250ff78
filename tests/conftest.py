import pytest

CUSTOM_SPEC = '''
"""Adam whose second moment is updated from the previous first moment (a made-up research tweak)."""
from adamgen.spec import Spec, grad, param, sqrt, step

spec = Spec("laggy_adam", doc="Adam with a lagged second moment.")
lr, beta1, beta2, eps = spec.hyperparameters(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
m = spec.update(exp_avg, beta1 * exp_avg + (1 - beta1) * grad)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * exp_avg**2)
spec.update(param, param - lr / (1 - beta1**step) * m / (sqrt(v / (1 - beta2**step)) + eps))
'''


@pytest.fixture
def spec_file(tmp_path):
    """A user's spec file in its own folder."""
    path = tmp_path / "laggy_adam.py"
    path.write_text(CUSTOM_SPEC)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache directory for generated user variants."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("ADAMGEN_CACHE_DIR", str(directory))
    return directory
