"""The compiler pipeline: spec -> validate -> lower -> print -> render -> write."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

import sympy

from . import __version__, targets
from .errors import GenerateError
from .loader import command_line
from .lower import lower
from .printing import Printed, print_lowered
from .render import render, write_if_changed
from .resources import generated_dir
from .spec import Variant, param
from .targets import Target
from .transforms import maximize
from .variants import as_variant, builtin_variants

TARGETS = tuple(targets.targets())  # the target names: "cpu", "cuda"


@dataclasses.dataclass(frozen=True)
class Module:
    """Everything a target's template renders into one generated module; nothing in it is computed by the template.

    Text fields (``doc``, ``reference``, ``command``) may come from a user: templates write them only through the
    ``comment`` and ``docstring`` filters, which cannot end a comment or a string literal."""

    target: Target
    variant: str                      # the module's variant name, a checked identifier
    version: str                      # adamgen's version
    sympy_version: str
    spec_hash: str
    command: str                      # how to regenerate the module
    rule: tuple[str, ...]             # the update rule, one readable line per definition and update
    doc: str
    reference: str
    states: tuple[tuple[str, object], ...]        # state arrays and their initial values ("param": a copy of it)
    scalar_states: tuple[tuple[str, float], ...]  # per-tensor host scalars and their initial values
    remainders: tuple[str, ...]                   # states holding the low halves of float32 parameters (LowHalf)
    inputs: tuple[str, ...]                       # per-element arrays each step is given (Spec.input)
    row_states: tuple[tuple[str, float], ...]     # host float64 states with one value per row, and initial values
    col_states: tuple[tuple[str, float], ...]     # ... per column
    hyperparameters: tuple[tuple[str, object], ...]  # names and defaults (a bool default makes a flag)
    printed: Printed

    @property
    def arrays(self) -> tuple[str, ...]:
        return self.printed.arrays

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.states)

    @property
    def grouped(self) -> bool:
        """Whether a reduction adds over every tensor stepped together (so a list is not a set of separate steps)."""
        return self.printed.grouped

    @property
    def elementwise(self) -> bool:
        """Whether each element's update reads only that element: no reduction, no element count."""
        return not self.printed.reductions and "numel" not in self.printed.host_inputs and not self.factored

    @property
    def inputs_argument(self) -> str:
        """The inputs' arrays as ``_checked_arrays`` takes them (a dict literal of the step's keyword arguments), after
        a comma; empty without inputs."""
        if not self.inputs:
            return ""
        return ", {" + ", ".join(f"{name!r}: {name}" for name in self.inputs) + "}"

    @property
    def factored(self) -> bool:
        """Whether the rule has row or column states or reductions (host float64 row and column states, tiles)."""
        return self.printed.factored


def generate(spec, target: str = "cpu", command: str | None = None) -> str:
    """The source of one self-contained generated module. Pure: equal inputs give byte-identical output.

    Raises ``SpecError`` for a spec no target can compile and ``GenerateError`` if the rendered module is not valid
    Python (which would be a bug of adamgen's)."""
    target = targets.target(target)
    variant = as_variant(spec)                      # check the user's spec
    lowered = lower(maximize(variant))              # torch's maximize flag; host blocks, element phases, CSE
    printed = print_lowered(lowered, target.printer)  # float64 NumPy host code, typed element code
    module = _module(variant, lowered.variant.hyperparameters, printed, target,
                     command or f"adamgen generate {variant.name} --target {target}")
    source = render(module)                         # the target's template
    try:                                            # never hand out a module that does not compile
        compile(source, f"<adamgen {variant.name} {target}>", "exec")
    except (SyntaxError, ValueError) as error:
        raise GenerateError(f"the generated {target} module of {variant.name} does not compile ({error}); this is "
                            "a bug in adamgen") from error
    return source


def _module(variant: Variant, hyperparameters, printed: Printed, target: Target, command: str) -> Module:
    """The template's input: the user's variant as written (its hash and rule), the hyperparameters the kernels take
    (the variant's and torch's ``maximize``)."""
    return Module(
        target=target,
        variant=variant.name,
        version=__version__,
        sympy_version=sympy.__version__,
        spec_hash=variant.content_hash(),
        command=command,
        rule=tuple(variant.rule()),
        doc=variant.doc or f"The {variant.name} optimizer.",
        reference=variant.reference,
        states=tuple((s.name, "param" if init is param else init) for s, init in variant.states),
        scalar_states=tuple((s.name, init) for s, init in variant.scalar_states),
        remainders=tuple(s.name for s in variant.remainders),
        inputs=tuple(s.name for s in variant.inputs),
        row_states=tuple((s.name, init) for s, init in variant.row_states),
        col_states=tuple((s.name, init) for s, init in variant.col_states),
        hyperparameters=tuple((h.name, d) for h, d in hyperparameters),
        printed=printed,
    )


def builtin_sources(targets=TARGETS) -> dict[Path, str]:
    """Every file of the shipped ``generated/`` folder, relative path -> content."""
    package_doc = '"""Kernels generated by adamgen for the built-in variants; see `adamgen list`."""\n'
    files = {Path("__init__.py"): package_doc}
    for target in targets:
        files[Path(target, "__init__.py")] = package_doc
        for name, options, variant in builtin_variants():
            command = command_line(name, options, target, out="generated")  # run from the repository's root
            files[Path(target, f"{variant.name}.py")] = generate(variant, target, command)
    return files


def write_builtins(out: Path | None = None, targets=TARGETS) -> list[Path]:
    """Write the built-in kernels into ``out`` (default: the package's ``generated/``). Returns the files written."""
    out = Path(out) if out is not None else generated_dir()
    return [out / rel for rel, text in builtin_sources(targets).items() if write_if_changed(out / rel, text)]


def check_builtins(out: Path | None = None, targets=TARGETS) -> list[str]:
    """Differences between ``out`` (default: the package's ``generated/``) and what the generator produces now.

    Returns one unified-diff summary per stale, missing or unexpected file; an empty list means up to date."""
    out = Path(out) if out is not None else generated_dir()
    expected = builtin_sources(targets)
    problems = []
    for rel, text in expected.items():
        path = out / rel
        if not path.exists():
            problems.append(f"missing: {rel}")
            continue
        actual = path.read_text()
        if actual != text:
            diff = list(difflib.unified_diff(actual.splitlines(), text.splitlines(), f"{rel} (on disk)",
                                             f"{rel} (generator)", lineterm="", n=1))
            problems.append(f"stale: {rel}\n" + "\n".join(diff[:40]))
    for path in sorted(out.rglob("*.py")):
        if path.relative_to(out) not in expected and path.parent.name in targets:
            problems.append(f"unexpected: {path.relative_to(out)}")
    return problems
