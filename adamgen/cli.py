"""The ``adamgen`` command line: list, show, generate, check, demo, new."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import sympy

from . import __version__
from .errors import AdamgenError, GenerateError, SpecError
from .generate import TARGETS
from .variants import BUILTINS, ON_DEMAND, OPTIONS, builtin, with_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adamgen", description="Compile optimizer update rules written in SymPy "
                                     "into fused Numba CPU and CUDA kernels. Spec files are Python: "
                                     "they are run, so use only files you trust.")
    parser.add_argument("--version", action="version", version=f"adamgen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="the built-in variants, their options and references")

    show = commands.add_parser("show", help="print a variant's update rule")
    show.add_argument("variant", help="a built-in name or a spec file")
    show.add_argument("--latex", action="store_true", help="print LaTeX instead of plain text")
    _add_options(show)

    gen = commands.add_parser("generate", help="generate kernels (no variant: every built-in into the package's "
                              "generated/, in a source checkout)")
    gen.add_argument("variants", nargs="*", metavar="VARIANT", help="built-in names or spec files")
    gen.add_argument("--target", choices=(*TARGETS, "all"), default="all", help="default: all")
    gen.add_argument("--out", type=Path, help="output folder (default: the package's generated/ when no VARIANT is "
                     "named, . for a named built-in, the spec file's folder for a spec file); files go to "
                     "OUT/<target>/<variant>.py; with several variants, all files are written or none")
    _add_options(gen)

    commands.add_parser("check", help="exit 1 if generated/ differs from what the generator produces now")

    demo = commands.add_parser("demo", help="train a small model with generated optimizers and print the losses")
    demo.add_argument("--steps", type=int, default=300)

    new = commands.add_parser("new", help="start a variant: write NAME.py, an editable spec file copied from BASE")
    new.add_argument("name", metavar="NAME", help="the new variant's name (a Python identifier)")
    new.add_argument("--from", dest="base", required=True, metavar="BASE", help="a built-in name or a spec file")
    new.add_argument("--out", type=Path, default=Path("."), help="folder for NAME.py (default: .)")
    new.add_argument("--force", action="store_true", help="overwrite an existing NAME.py")

    args = parser.parse_args(argv)
    try:
        return {"list": _list, "show": _show, "generate": _generate, "check": _check, "demo": _demo,
                "new": _new}[args.command](args)
    except AdamgenError as error:
        print(f"adamgen: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `adamgen list | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


OPTION_HELP = {
    "decoupled_weight_decay": "decoupled weight decay param *= 1 - lr*weight_decay instead of L2 in the gradient",
    "amsgrad": "AMSGrad: use the running maximum of the second moment",
    "decouple_lr": "fully decoupled weight decay (lr/max_lr * weight_decay per step, as optimi's decouple_lr)",
    "cautious": "mask the update where it disagrees with the gradient, rescaled by the mask's mean",
    "corrected_weight_decay": "corrected weight decay (lr**2/max_lr * weight_decay per step, as timm's option)",
    "cautious_weight_decay": "decay only where the parameter and the update agree in sign (u * param >= 0)",
    "clip_grad_norm": "clip the gradients to a global norm of max_grad_norm (over every tensor stepped together)",
    "stochastic_rounding": "stochastic rounding of bfloat16 parameters (hyperparameter seed)",
    "kahan": "Kahan-compensated parameter updates (a kahan_comp state) for bfloat16 and float16 parameters",
    "master_weights": "exact float32 master weights as bfloat16 parameters plus int16 remainders (a param_remainder "
                      "state)",
}


def _add_options(parser: argparse.ArgumentParser) -> None:
    for name in OPTIONS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_true", help=OPTION_HELP[name])


def _options(args) -> dict:
    return {name: True for name in OPTIONS if getattr(args, name, False)}


def _variant(name: str, options: dict):
    from .loader import read_spec_file

    variant = builtin(name) if name in BUILTINS else read_spec_file(Path(name))
    return with_options(variant, **options)


def _list(args) -> int:
    for name, options in BUILTINS.items():
        variant = builtin(name)
        defaults = ", ".join(f"{h}={d}" for h, d in variant.hyperparameters)
        print(f"{name}: {variant.doc}")
        print(f"    reference: {variant.reference}")
        print(f"    options: {', '.join('--' + o.replace('_', '-') for o in options) or 'none'}")
        on_demand = [o for o in ON_DEMAND if _fits(variant, o)]
        if on_demand:
            print(f"    also (generated on first use): {', '.join('--' + o.replace('_', '-') for o in on_demand)}")
        print(f"    defaults: {defaults}")
    return 0


def _fits(variant, option: str) -> bool:
    try:
        with_options(variant, **{option: True})
    except SpecError:
        return False
    return True


def _show(args) -> int:
    variant = _variant(args.variant, _options(args))
    if args.latex:
        print(_latex(variant))
        return 0
    print(f"{variant.name}: {variant.doc}" + (f" Reference: {variant.reference}." if variant.reference else ""))
    print("hyperparameters: " + ", ".join(f"{h}={d}" for h, d in variant.hyperparameters))
    print("states: " + (", ".join(f"{s} (init {v})" for s, v in variant.states) or "none"))
    if variant.scalar_states:
        print("scalar states: " + ", ".join(f"{s} (init {v})" for s, v in variant.scalar_states))
    if variant.inputs:
        print("inputs (given to each step, never written): " + ", ".join(s.name for s in variant.inputs))
    if variant.row_states or variant.col_states:
        print("row and column states (float64, one value per row / column): " + ", ".join(
            f"{s} ({kind}, init {v})" for kind, states in (("row", variant.row_states), ("column", variant.col_states))
            for s, v in states))
    print()
    for line in variant.rule():
        print("  " + line)
    return 0


def _latex(variant) -> str:
    """The definitions as a LaTeX ``aligned`` block; multi-word names are set upright (bias_correction1)."""
    symbols = set(variant.element_symbols | variant.host_symbols) | {s for s, _ in variant.definitions}
    symbols |= {s for s, _ in variant.row_states + variant.col_states}
    names = {s: r"\mathrm{%s}" % s.name.replace("_", r"\_") for s in symbols if "_" in s.name}
    lines = [rf"  {sympy.latex(s, symbol_names=names)} &= {sympy.latex(e, symbol_names=names)} \\"
             for s, e in variant.definitions]
    return "\n".join([r"\begin{aligned}", *lines, r"\end{aligned}"])


def _generate(args) -> int:
    from .generate import generate, write_builtins
    from .loader import command_line
    from .resources import generated_dir

    targets = TARGETS if args.target == "all" else (args.target,)
    options = _options(args)
    if not args.variants:
        if args.out is None and not (generated_dir().parent / "pyproject.toml").is_file():
            raise GenerateError(f"`adamgen generate` with no VARIANT rewrites the package's own generated/ folder, and "
                                f"this adamgen is an installed package ({generated_dir().parent}), not a source "
                                "checkout: name the variants to generate, or pass --out DIR")
        if options:
            raise GenerateError("options such as --amsgrad apply to named variants; `adamgen generate` with no "
                                "VARIANT writes every built-in with every option already")
        written = write_builtins(args.out, targets)
        print(f"{len(written)} file(s) written" + "".join(f"\n  {p}" for p in written))
        return 0
    files: dict[Path, str] = {}
    origin: dict[Path, str] = {}
    for name in args.variants:  # generate everything first: a bad spec leaves no file behind
        variant = _variant(name, options)
        out = args.out or (Path(".") if name in BUILTINS else Path(name).parent)
        for target in targets:
            path = out / target / f"{variant.name}.py"
            source = generate(variant, target, command_line(name, options, target, args.out))
            if path in files and files[path] != source:
                raise GenerateError(f"{origin[path]} and {name} would both write {path}")
            files[path], origin[path] = source, name
    for path, changed in write_all(files):
        print(f"{'wrote' if changed else 'unchanged'} {path}")
    return 0


def write_all(files: dict[Path, str]) -> list[tuple[Path, bool]]:
    """Write every file of ``files`` (path -> text) that differs from what is on disk, all or none.

    Each changed file is first written in full to a temporary file beside it; only when all are written are they
    renamed into place. A failure removes the temporary files and the folders made here, and puts back any file already
    replaced, then raises ``GenerateError``. Returns (path, whether it was written) for each file."""
    def unchanged(path: Path, text: str) -> bool:
        try:
            return path.read_text() == text
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return False

    changed = {path: text for path, text in files.items() if not unchanged(path, text)}
    made: list[Path] = []  # folders created here, parents first
    temporary: dict[Path, str] = {}
    replaced: list[tuple[Path, bytes | None]] = []
    try:
        for path, text in changed.items():
            missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
            for folder in reversed(missing):
                folder.mkdir()
                made.append(folder)
            fd, temporary[path] = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", newline="\n") as f:
                f.write(text)
            os.chmod(temporary[path], 0o644)
        for path, tmp in temporary.items():
            replaced.append((path, path.read_bytes() if path.exists() else None))
            os.replace(tmp, path)
    except OSError as error:
        undo = [*(lambda tmp=tmp: Path(tmp).unlink(missing_ok=True) for tmp in temporary.values()),
                *(lambda path=path, old=old: path.unlink(missing_ok=True) if old is None else path.write_bytes(old)
                  for path, old in reversed(replaced)),
                *(folder.rmdir for folder in reversed(made))]
        for step in undo:
            try:
                step()
            except OSError:
                pass
        raise GenerateError(f"cannot write {error.filename or 'the output'}: {error.strerror or error}; "
                            "no file was written") from error
    return [(path, path in changed) for path in files]


def _check(args) -> int:
    from .generate import check_builtins
    from .resources import generated_dir

    problems = check_builtins()
    if problems:
        print(f"generated/ ({generated_dir()}) is out of date: {len(problems)} file(s) differ from the generator; "
              "run `adamgen generate` to refresh.")
        for problem in problems:
            print(problem)
        return 1
    print(f"generated/ is up to date ({generated_dir()})")
    return 0


def _demo(args) -> int:
    """Logistic regression on synthetic data, trained with three generated optimizers."""
    import numpy as np

    from .loader import load

    rng = np.random.default_rng(0)
    samples, features = 4096, 256
    x = rng.standard_normal((samples, features)).astype(np.float32)
    true_w = rng.standard_normal(features).astype(np.float32)
    y = (x @ true_w + 0.5 * rng.standard_normal(samples) > 0).astype(np.float32)

    def loss_and_grad(w):
        z = x @ w
        prob = 1 / (1 + np.exp(-z))
        loss = float(np.mean(np.logaddexp(0, z) - y * z))
        return loss, (x.T @ (prob - y) / samples).astype(np.float32)

    print(f"logistic regression, {samples} samples x {features} features, {args.steps} steps, float32")
    for name, hyperparameters in [("adam", {"lr": 1e-2}), ("adamw", {"lr": 1e-2}), ("nadam", {"lr": 1e-2})]:
        start = time.perf_counter()
        optimizer = load(name)
        scratch = np.zeros(features, np.float32)  # one step on scratch arrays compiles or loads the kernel
        optimizer.step(scratch, np.zeros_like(scratch), optimizer.init(scratch), **hyperparameters)
        setup = time.perf_counter() - start
        how = "compiled" if _compiled(optimizer) else "loaded from the cache"
        w = np.zeros(features, np.float32)
        state = optimizer.init(w)
        losses = []
        start = time.perf_counter()
        for _ in range(args.steps):
            loss, grad = loss_and_grad(w)
            losses.append(loss)
            optimizer.step(w, grad, state, **hyperparameters)
        seconds = time.perf_counter() - start
        marks = "  ".join(f"{i}:{losses[i]:.4f}" for i in range(0, args.steps, max(1, args.steps // 5)))
        print(f"  {name:6s} loss {marks}  final {loss_and_grad(w)[0]:.4f}  ({seconds:.2f} s; kernel {how} in "
              f"{setup:.2f} s)")
    return 0


def _compiled(module) -> bool:
    """Whether any kernel of a generated CPU module was compiled in this process (rather than loaded from the cache)."""
    return any(sum(value.stats.cache_misses.values()) for value in vars(module).values()
               if hasattr(value, "stats") and hasattr(value, "py_func"))


# Built-ins that are derived by transforms (no `Spec(...)` in their file), written out as standalone spec files.
_STANDALONE = {
    "adamw": '''"""{name}: AdamW (Loshchilov & Hutter, 2017) as one spec: decoupled weight decay, then Adam."""

from adamgen.spec import Spec, grad, param, sqrt, step

spec = Spec("{name}", doc="AdamW written out: decoupled weight decay, then the Adam step.")
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2)
exp_avg, exp_avg_sq = spec.states("exp_avg", "exp_avg_sq")
bias_correction1 = spec.define("bias_correction1", 1 - beta1**step)
bias_correction2 = spec.define("bias_correction2", 1 - beta2**step)
step_size = spec.define("step_size", lr / bias_correction1)
m = spec.update(exp_avg, exp_avg + (1 - beta1) * (grad - exp_avg))  # torch.lerp(exp_avg, grad, 1 - beta1)
v = spec.update(exp_avg_sq, beta2 * exp_avg_sq + (1 - beta2) * grad**2)
spec.update(param, param * (1 - lr * weight_decay) - step_size * m / (sqrt(v / bias_correction2) + eps))
''',
}


def new_spec_source(name: str, base: str) -> str:
    """The text of an editable spec file for variant ``name``, copied from ``base`` (a built-in or a spec file)."""
    import keyword
    import re

    from .errors import SpecError

    if not name.isidentifier() or keyword.iskeyword(name):
        raise SpecError(f"{name!r} is not a valid variant name: use a Python identifier such as my_adamw")
    if base in _STANDALONE:
        source = _STANDALONE[base].format(name=name)
    else:
        path = Path(__file__).parent / "variants" / f"{base}.py" if base in BUILTINS else Path(base)
        if not path.is_file():
            raise AdamgenError(f"--from {base}: no such spec file, and not a built-in variant ({', '.join(BUILTINS)})")
        source = path.read_text()
        pattern = re.compile(r"(Spec\(\s*)([\"'])([A-Za-z_]\w*)\2")
        if not pattern.search(source):
            raise AdamgenError(f"--from {base}: {path.name} builds its spec by transforms, not with Spec(...); start "
                               f"from one of {', '.join(sorted(set(BUILTINS) - {base}) + sorted(_STANDALONE))}")
        source = pattern.sub(lambda m: f'{m.group(1)}"{name}"', source, count=1)
        # an edited variant no longer matches the base's reference implementation
        source = re.sub(r"\breference=([\"']).*?\1,\s*", "", source, count=1)
    header = (f"# {name}: started from {base} (adamgen new {name} --from {base}). Edit the update rule, then\n"
              f"#   adamgen show {name}.py  /  adamgen generate {name}.py  /  adamgen.load(\"{name}.py\")\n")
    return header + source


def _new(args) -> int:
    from .loader import read_spec_file

    path = args.out / f"{args.name}.py"
    if path.exists() and not args.force:
        print(f"adamgen: error: {path} exists (--force overwrites it)", file=sys.stderr)
        return 2
    source = new_spec_source(args.name, args.base)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    variant = read_spec_file(path)
    print(f"wrote {path}: variant {variant.name} ({len(variant.states)} state(s), hyperparameters "
          f"{', '.join(h.name for h, _ in variant.hyperparameters)})")
    print(f"next: edit it, then `adamgen show {path}` and `adamgen generate {path}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
