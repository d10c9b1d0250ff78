"""Every built-in has its file in tests/variants/, and the file covers every option set the built-in ships with.

The built-ins are enumerated from ``adamgen.variants`` (never from the files), so a new built-in without a file, or a
new option on an existing one without a case, fails here. A case holds the module against an independent
implementation (a torch.optim twin, a NumPy transcription of the paper or a reference package) or says why it needs
none. The references' typed-in defaults are held against the specs'."""

import pytest

import adamgen
from adamgen.variants import BUILTINS, builtin_variants

import variants
from variants import NumpyReference


@pytest.mark.parametrize("name", list(BUILTINS))
def test_every_builtin_has_its_file(name):
    assert name in variants.FILES, f"tests/variants/{name}.py is missing: a built-in needs VARIANT = VariantTests(...)"
    assert variants.FILES[name].name == name


def test_every_file_is_a_builtin_and_every_case_id_is_unique():
    assert set(variants.FILES) <= set(BUILTINS), sorted(set(variants.FILES) - set(BUILTINS))
    ids = [case.id for case in variants.CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


SHIPPED = builtin_variants()


@pytest.mark.parametrize("name, options, variant", SHIPPED, ids=[variant.name for _, _, variant in SHIPPED])
def test_every_option_set_has_a_reference_or_a_reason(name, options, variant):
    tests = variants.FILES.get(name, variants.VariantTests(name, cases=()))
    cases = [case for case in tests.cases if dict(case.options) == options]
    assert cases, (f"tests/variants/{name}.py: no case for {variant.name} ({options}): add a reference, or a case "
                   "without one that says why")
    assert all(case.module == variant.name for case in cases)


def test_every_case_runs_a_shipped_module():
    shipped = {variant.name for _, _, variant in SHIPPED}
    assert {case.module for case in variants.CASES} <= shipped


NUMPY = {(case.reference, case.variant, tuple(sorted(case.options))): case for case in variants.CASES
         if isinstance(case.reference, type) and issubclass(case.reference, NumpyReference)}


@pytest.mark.parametrize("case", list(NUMPY.values()), ids=[reference.__name__ for reference, _, _ in NUMPY])
def test_numpy_references_have_the_specs_defaults(case):
    """The defaults typed in from the paper are the spec's, under the case's options."""
    reference = case.reference()
    assert {**reference.defaults, "maximize": False} == adamgen.load(case.variant, **case.options).HYPERPARAMETERS
