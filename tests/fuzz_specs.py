"""Fuzz runner: many malformed, adversarial and valid specs through adamgen, with a time limit per case.

    python tests/fuzz_specs.py --cases 3000 --compile 200

Draws cases with the strategies of fuzzing.py (those of test_fuzz_specs.py): malformed specs, adversarial valid ones,
random valid rules, specs at the bounds on size and depth, and specs whose host code meets a division by zero or an
overflow. Every case is validated, transformed by its options, lowered, printed, rendered for every target and compiled
as Python; the first ``--compile`` accepted cases are also compiled by Numba and stepped next to the float64 oracle in
float64 and float32. Prints the counts: cases generated, clear errors, accepted and correct, anything else (with
examples), and the host-code cases apart. Exits 1 if anything else happened.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import tempfile
import time
import traceback
import warnings

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzzing  # noqa: E402

# Relative frequencies of the kinds of case.
MIX = {"malformed": 14, "adversarial": 2, "valid": 3, "host": 1, "at the bounds": 1}


class CaseTimeout(BaseException):
    """Raised in a case that runs past the time limit (a BaseException, so that no ``except Exception`` catches it)."""


def _alarm(signum, frame):
    raise CaseTimeout()


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def run_case(case, compile_kernels: bool, limit: float) -> tuple[str, str]:
    """(verdict, detail); verdict is "clear error", "accepted, checked against the oracle", "accepted, generated",
    or a problem."""
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        result = fuzzing.outcome(case)
        problem = fuzzing.judge(case, result)
        if problem:
            return "wrong outcome", problem
        if result.kind == "error":
            return "clear error", result.message
        if not compile_kernels:
            return "accepted, generated", ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for dtype in ("float64", "float32"):
                fuzzing.check_module(case, dtype, nonfinite=bool(case.why))
        return "accepted, checked against the oracle", ""
    except CaseTimeout:
        return "over the time limit", f"more than {limit:g} s"
    except fuzzing.Mismatch as error:
        return "kernel disagrees with the oracle", str(error).splitlines()[0]
    except Exception as error:  # noqa: BLE001 - a raw exception is what this runner looks for
        return f"raw {type(error).__name__}", "".join(traceback.format_exception_only(error)).strip()[-500:]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases to generate (default 2000)")
    parser.add_argument("--compile", type=int, default=100,
                        help="accepted cases to compile with Numba and check against the oracle (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per case (default 60)")
    parser.add_argument("--examples", type=int, default=3, help="examples to print per kind of problem (default 3)")
    args = parser.parse_args(argv)
    os.environ.setdefault("ADAMGEN_CACHE_DIR", tempfile.mkdtemp(prefix="adamgen-fuzz-"))
    signal.signal(signal.SIGALRM, _alarm)

    weighted = [kind for kind, weight in MIX.items() for _ in range(weight)]
    tally = collections.Counter()       # (group, verdict)
    by_category = collections.Counter()  # (category, verdict)
    problems = collections.defaultdict(list)
    compiled, times, started = 0, [], time.perf_counter()

    @seed(args.seed)
    @settings(max_examples=args.cases, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(weighted).flatmap(fuzzing.cases))
    def one(case):
        nonlocal compiled
        start = time.perf_counter()
        compile_kernels = case.expect != "error" and compiled < args.compile
        verdict, detail = run_case(case, compile_kernels, args.limit)
        compiled += verdict == "accepted, checked against the oracle"
        times.append((time.perf_counter() - start, case.category))
        group = "specs"
        tally[group, verdict] += 1
        by_category[case.category, verdict] += 1
        if not verdict.startswith(("clear error", "accepted")):
            problems[group, verdict].append((case, detail))
        done = sum(tally.values())
        if done % 100 == 0:
            print(f"... {done} cases, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        one()
    except KeyboardInterrupt:
        print(f"interrupted: the counts below are of the first {sum(tally.values())} cases")
    total = sum(tally.values())
    specs = {v: n for (g, v), n in tally.items() if g == "specs"}
    clear = specs.get("clear error", 0)
    correct = specs.get("accepted, checked against the oracle", 0) + specs.get("accepted, generated", 0)
    other = sum(specs.values()) - clear - correct
    print(f"generated cases: {total} in {time.perf_counter() - started:.0f} s")
    print(f"  clear errors: {clear}")
    print(f"  accepted and correct: {correct} ({specs.get('accepted, checked against the oracle', 0)} compiled and "
          f"checked against the oracle in float64 and float32; {specs.get('accepted, generated', 0)} generated for "
          "both targets and compiled as Python)")
    print(f"  anything else: {other}")
    for (group, verdict), n in sorted(tally.items()):
        if group == "specs" and not verdict.startswith(("clear error", "accepted")):
            print(f"    {verdict}: {n}")
    host = {v: n for (g, v), n in tally.items() if g != "specs"}
    if host:
        print(f"host-code float semantics (known, left to the host printer): {sum(host.values())}: "
              + ", ".join(f"{v}: {n}" for v, n in sorted(host.items())))
    slowest = sorted(times, reverse=True)[:3]
    print("slowest cases: " + ", ".join(f"{t:.1f} s ({c})" for t, c in slowest))
    print("\nby category:")
    for category in sorted({c for c, _ in by_category}):
        verdicts = {v: n for (c, v), n in by_category.items() if c == category}
        print(f"  {category}: " + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items())))
    for (group, verdict), cases in sorted(problems.items()):
        print(f"\n=== {group}: {verdict} ({len(cases)})")
        for case, detail in cases[:args.examples]:
            print(f"--- {detail}\n{repr(case)[:1500]}")
    return 1 if other else 0


if __name__ == "__main__":
    sys.exit(main())
