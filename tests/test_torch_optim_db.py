"""adamgen.torch's Adam, AdamW, Adamax, NAdam and RAdam driven by the inputs torch tests its own classes with:
``torch.testing._internal.common_optimizers.optim_db`` holds one ``OptimizerInfo`` per torch.optim class, with the
constructor arguments it is tested under (``optim_inputs_func``) and the arguments it must refuse
(``optim_error_inputs_func``).

- Every input, on its own and with each implementation switch torch tests it with (``foreach``, ``differentiable``,
  ``fused`` where the class has it), CUDA-only inputs included (all of them ``capturable=True``): adamgen refuses
  ``capturable=True`` and ``differentiable=True`` with a ValueError naming the switch; any other input torch itself
  refuses must be refused the same way; every other one runs a few steps on float32 and float64 parameters next to
  the torch class with the same arguments and data, and must land on the same parameters and state within
  the tolerances of their twins in ``tests/variants/``.
- Every error input: the same exception type (or warning) as torch's test expects, with a message matching torch's
  test's pattern.
"""

from __future__ import annotations

import copy
import random
import re

import numpy as np
import pytest

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")

import adamgen.torch as agt  # noqa: E402
import variants  # noqa: E402


def _import_common_optimizers():
    """torch's optimizer test module, whose import (through common_utils) freezes torch.backends' flags and seeds the
    global random generators: both are undone, so that the rest of the test run goes as it would without them."""
    frozen = torch.backends.flags_frozen()
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()
    from torch.testing._internal import common_optimizers

    if not frozen:
        setattr(torch.backends, "__allow_nonbracketed_mutation_flag", True)
    torch.set_rng_state(states[0])
    random.setstate(states[1])
    np.random.set_state(states[2])
    return common_optimizers


common_optimizers = _import_common_optimizers()

NAMES = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam")
INFOS = {info.optim_cls.__name__: info for info in common_optimizers.optim_db if info.optim_cls.__name__ in NAMES}
STEPS = 8
REFUSED = ("capturable", "differentiable")


@pytest.fixture(autouse=True, scope="module")
def _torch_single_thread():
    """torch's and numba's OpenMP pools spin-wait against each other on 2 cores; tiny tensors need one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_optim_db_has_the_five_classes():
    assert sorted(INFOS) == sorted(NAMES)
    for name in NAMES:
        assert INFOS[name].optim_cls is getattr(torch.optim, name)


# -- inputs ------------------------------------------------------------------------------------------------------------

def _inputs():
    """(class name, description, keyword arguments, whether the input is one torch runs on CUDA only) for every
    optim_db input of the five classes, alone and with each implementation switch torch tests it with."""
    result = []
    for name in NAMES:
        info = INFOS[name]
        cpu = info.optim_inputs_func(device="cpu")
        every = info.optim_inputs_func(device="cuda")  # the CPU inputs, then the CUDA-only ones
        assert [i.desc for i in every[:len(cpu)]] == [i.desc for i in cpu]
        for index, optim_input in enumerate(every):
            for switch in (None, *info.supported_impls):
                kwargs = dict(optim_input.kwargs)
                if switch is not None:
                    kwargs[switch] = True
                description = optim_input.desc + (f" & {switch}" if switch else "")
                result.append((name, description, kwargs, index >= len(cpu)))
    return result


INPUTS = _inputs()
INPUT_IDS = [f"{name}-{description}{' (cuda-only)' if cuda else ''}-{k}"
             for k, (name, description, _, cuda) in enumerate(INPUTS)]


def _problem(dtype):
    """Parameters (contiguous, a scalar-like one, one dense but transposed) and STEPS gradients each, in the
    parameter's memory layout."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(10, 5, generator=generator, dtype=dtype), torch.randn(10, generator=generator, dtype=dtype),
              torch.randn(1, generator=generator, dtype=dtype), torch.randn(4, 6, generator=generator, dtype=dtype).t()]
    grads = [[torch.empty_like(p).copy_(torch.randn(p.shape, generator=generator, dtype=dtype)) for p in params]
             for _ in range(STEPS)]
    return params, grads


def _run(optimizer_class, kwargs, params, grads):
    params = [p.clone().requires_grad_() for p in params]  # clone keeps a dense tensor's strides
    optimizer = optimizer_class(params, **copy.deepcopy(kwargs))
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        optimizer.step()
    return [p.detach() for p in params], optimizer.state_dict()["state"]


def _case(name, kwargs):
    """The twin case (tolerances) for a torch class under these arguments."""
    matching = [case for case in variants.TWINS if case.reference.optimizer == name
                and all(bool(kwargs.get(option, False)) == value for option, value in case.reference.flags.items())]
    assert len(matching) == 1, (name, kwargs)
    return matching[0]


def _torch_refusal(name, kwargs, params):
    """The exception torch's class raises when constructed with these arguments, or None."""
    try:
        getattr(torch.optim, name)([p.clone().requires_grad_() for p in params], **copy.deepcopy(kwargs))
    except Exception as error:  # noqa: BLE001 - whatever torch raises, adamgen must raise the same
        return error
    return None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name,description,kwargs,cuda_only", INPUTS, ids=INPUT_IDS)
def test_optim_db_input(name, description, kwargs, cuda_only, dtype):
    ours = getattr(agt, name)
    params, grads = _problem(dtype)
    refused = [switch for switch in REFUSED if kwargs.get(switch)]
    if refused:  # capturable / differentiable: refused at construction, naming the switch
        with pytest.raises(ValueError, match=f"{refused[0]}=True is not supported"):
            ours([p.clone().requires_grad_() for p in params], **copy.deepcopy(kwargs))
        return
    assert not cuda_only, "every CUDA-only input of optim_db is capturable"
    refusal = _torch_refusal(name, kwargs, params)
    if refusal is not None:
        with pytest.raises(type(refusal), match=re.escape(str(refusal))):
            ours([p.clone().requires_grad_() for p in params], **copy.deepcopy(kwargs))
        return

    case = _case(name, kwargs)
    theirs_params, theirs_state = _run(getattr(torch.optim, name), kwargs, params, grads)
    ours_params, ours_state = _run(ours, kwargs, params, grads)
    tolerance = case.tolerance[str(dtype).removeprefix("torch.")]
    for k, (mine, reference, initial) in enumerate(zip(ours_params, theirs_params, params)):
        assert mine.stride() == reference.stride()
        torch.testing.assert_close(mine, reference, rtol=tolerance.rtol, atol=tolerance.atol,
                                   msg=lambda m, k=k: f"parameter {k}: {m}")
        # the parameters moved by far more than the tolerance: agreeing on a no-op would prove nothing
        assert (mine - initial).abs().max() > 10 * (tolerance.atol + tolerance.rtol)
    assert ours_state.keys() == theirs_state.keys()
    for index, reference in theirs_state.items():
        mine = ours_state[index]
        assert mine.keys() == reference.keys(), index
        assert mine["step"].dtype == torch.float32 and mine["step"].dim() == 0
        assert mine["step"].item() == reference["step"].item() == STEPS
        for key, expected in reference.items():
            if key == "step":
                continue
            if key in case.reference.scalar_states.values():  # mu_product: float64 here, float32 in torch (nadam.py)
                scalar = case.reference.scalar_tolerance
                assert abs(mine[key].item() - expected.item()) <= scalar.atol + scalar.rtol * abs(expected.item())
                continue
            assert mine[key].dtype == expected.dtype and mine[key].shape == expected.shape, key
            torch.testing.assert_close(mine[key], expected, rtol=tolerance.rtol, atol=tolerance.atol,
                                       msg=lambda m, key=key, index=index: f"{key} of parameter {index}: {m}")


# -- error inputs ------------------------------------------------------------------------------------------------------

def _error_inputs(device):
    return [(name, error) for name in NAMES
            for error in INFOS[name].optim_error_inputs_func(device=device, dtype=torch.float32)]


ERROR_INPUTS = _error_inputs("cpu")
ERROR_IDS = [f"{name}-{error.optimizer_error_input.desc}-{k}" for k, (name, error) in enumerate(ERROR_INPUTS)]


def _expect_error(optimizer_class, error):
    optim_input = error.optimizer_error_input
    params, kwargs = optim_input.params, copy.deepcopy(optim_input.kwargs)
    if issubclass(error.error_type, Warning):
        context = pytest.warns(error.error_type, match=error.error_regex)
    else:
        context = pytest.raises(error.error_type, match=error.error_regex)
    if error.error_on == common_optimizers.OptimizerErrorEnum.CONSTRUCTION_ERROR:
        with context:
            optimizer_class(params, **kwargs)
    else:
        optimizer = optimizer_class(params, **kwargs)
        with context:
            optimizer.step()


@pytest.mark.parametrize("name,error", ERROR_INPUTS, ids=ERROR_IDS)
def test_optim_db_error_input(name, error):
    _expect_error(getattr(agt, name), error)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="optim_db builds these error inputs on a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_optim_db_cuda_error_inputs(name):
    errors = [error for _, error in _error_inputs("cuda") if _ == name]
    for error in errors:
        _expect_error(getattr(agt, name), error)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("kwargs,message", [
    ({"foreach": True, "fused": True}, "`fused` and `foreach` cannot be `True` together"),
    ({"fused": True, "differentiable": True}, "`fused` does not support `differentiable`"),
])
def test_fused_switch_errors_as_torch_on_cpu(name, kwargs, message):
    """optim_db's CUDA-only error inputs of Adam and AdamW, on a CPU tensor (torch checks them on any device)."""
    for optimizer_class in (getattr(torch.optim, name), getattr(agt, name)):
        with pytest.raises(RuntimeError, match=message):
            optimizer_class([torch.zeros((), requires_grad=True)], **kwargs)
