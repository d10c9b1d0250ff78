#!/usr/bin/env bash
# adamgen's CUDA check on a machine with an NVIDIA GPU: the device, tests/test_cuda.py with its GPU tests, and the GPU
# benchmark, then one summary. Run from the repository root, with no install step:
#
#     bash benchmarks/gpu_check.sh             # writes bench-cuda.json and gpu-check-tests.log under $OUT, else .
#
# Needs a python (PYTHON, default python) with numba, numba-cuda, sympy, jinja2, pytest and a CUDA build of torch;
# PYTHONPATH=. makes the checkout importable. Nothing is written inside the checkout but the results: caches and
# temporary files go to a temporary folder, removed at the end. Each stage has a time limit (all together under 8
# minutes); a stage that fails or runs out of time is reported and the next one still runs. Without a GPU the tests
# still run (the simulator and PTX tests; the GPU tests are skipped) and the benchmark is skipped.
# Exit status: 0 all ran and passed, 1 a stage failed or timed out, 2 no GPU (what needs one was skipped).

set -u
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python}
RESULTS=${OUT:-.}
mkdir -p "$RESULTS" || exit 1
RESULTS=$(cd "$RESULTS" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/adamgen-gpu-check.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tmp"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export ADAMGEN_CACHE_DIR="$WORK/adamgen" NUMBA_CACHE_DIR="$WORK/numba" XDG_CACHE_HOME="$WORK/cache" \
    MPLCONFIGDIR="$WORK/matplotlib" TMPDIR="$WORK/tmp"
unset NUMBA_ENABLE_CUDASIM
# numba-cuda's bf16 bindings call numpy.row_stack, which NumPy 2.4 removed: where it is missing, this check's processes
# get it back as vstack (its old alias) from a sitecustomize of their own
mkdir -p "$WORK/shim"
printf 'import numpy\nif not hasattr(numpy, "row_stack"):\n    numpy.row_stack = numpy.vstack\n' > "$WORK/shim/sitecustomize.py"
export PYTHONPATH="$WORK/shim:$PYTHONPATH"
TESTS_LOG="$RESULTS/gpu-check-tests.log"
BENCH_JSON="$RESULTS/bench-cuda.json"
BENCH_LOG="$WORK/bench.log"
BEGIN=$SECONDS
FAILED=0

stage() { echo; echo "=== $* ==="; }

# The exit status of a command run under `timeout`, as words.
outcome() {  # status limit
    case $1 in
        0) echo "ok" ;;
        124 | 137) echo "timed out after $2 s" ;;
        *) echo "failed (exit status $1)" ;;
    esac
}

stage "device"
GPU=0
if command -v nvidia-smi > /dev/null 2>&1; then
    timeout -k 2 10 nvidia-smi
    timeout -k 2 5 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
        > "$WORK/gpu.txt" 2> /dev/null && [ -s "$WORK/gpu.txt" ] && GPU=1
fi
if [ "$GPU" = 1 ]; then
    DEVICE=$(head -n 1 "$WORK/gpu.txt")
else
    DEVICE="no NVIDIA GPU found (nvidia-smi missing or lists none)"
    echo "$DEVICE"
fi

stage "tests: python -m pytest -q -p no:cacheprovider tests/test_cuda.py (time limit 270 s)"
timeout -k 2 270 "$PYTHON" -m pytest -q -p no:cacheprovider -rfEs tests/test_cuda.py 2>&1 | tee "$TESTS_LOG"
TESTS_STATUS=${PIPESTATUS[0]}
TESTS_LINE=$(grep -E '[0-9]+ (passed|failed|skipped|errors?|deselected)' "$TESTS_LOG" | tail -n 1 |
    sed 's/=//g; s/^ *//; s/ *$//')
TESTS="$(outcome "$TESTS_STATUS" 270): ${TESTS_LINE:-no result line}"
[ "$TESTS_STATUS" = 0 ] || FAILED=1

stage "benchmark: python benchmarks/bench_cuda.py --out $BENCH_JSON (time limit 160 s)"
if [ "$GPU" = 1 ]; then
    rm -f "$BENCH_JSON"
    # Sections that would start after 120 s are skipped; the ones that ran are in the JSON file either way.
    timeout -k 2 160 "$PYTHON" benchmarks/bench_cuda.py --out "$BENCH_JSON" --budget 120 2>&1 | tee "$BENCH_LOG"
    BENCH_STATUS=${PIPESTATUS[0]}
    BENCH="$(outcome "$BENCH_STATUS" 160)"
    if [ "$BENCH_STATUS" = 2 ]; then
        BENCH="skipped: $(grep '^bench_cuda:' "$BENCH_LOG" | tail -n 1)"
    elif [ "$BENCH_STATUS" != 0 ]; then
        FAILED=1
    fi
else
    BENCH_STATUS=skipped
    BENCH="skipped: no GPU"
    echo "$BENCH"
fi

stage "summary"
echo "device:    $DEVICE"
echo "tests:     $TESTS"
echo "benchmark: $BENCH"
if [ -s "$BENCH_JSON" ]; then  # what the benchmark measured, even if it stopped early
    timeout -k 2 10 "$PYTHON" benchmarks/bench_cuda.py --summarize "$BENCH_JSON" | sed 's/^/    /'
    echo "results:   $BENCH_JSON, $TESTS_LOG"
else
    echo "results:   $TESTS_LOG"
fi
echo "time:      $((SECONDS - BEGIN)) s"
if [ "$FAILED" = 1 ]; then
    exit 1
elif [ "$GPU" = 0 ] || [ "$BENCH_STATUS" = 2 ]; then
    exit 2
fi
exit 0
