#!/usr/bin/env bash
# The GPU proof: everything fastact claims about CUDA, checked on one GPU machine in one command.
#
#   bash bench/gpu_proof.sh OUTDIR [--dry-run]
#
# Runs from a checkout (put on PYTHONPATH here) with python3 that has CuPy, PyTorch, pytest,
# hypothesis and ml_dtypes; installs nothing and needs no network. Steps, each bounded by
# `timeout` and logged, the next one run whatever the last one did:
#
#   info        python3 -m fastact info, nvidia-smi
#   precompile  every kernel module compiled in parallel into fastact's disk cache
#               (bench/precompile_cuda.py), so the tests and the benchmark load them
#   tests       the CUDA test suite with FASTACT_BACKEND=cuda: the cuda-parametrized cases of the
#               API, family, PReLU, fused and property tests, the >2**31-element case
#               (tests/test_cuda_large.py), streams, graph capture and PyTorch DLPack round trips
#               (tests/test_cuda_device.py); JUnit XML in OUTDIR/tests.xml
#   torch-tests the fastact.torch package's tests, where that package exists
#   memcheck    compute-sanitizer --tool memcheck on bench/cuda_probe.py (every kernel kind, tiny)
#   racecheck   compute-sanitizer --tool racecheck on the same
#   bench       python3 -m fastact bench --backend cuda: the key ops at 2**25 elements (64 MiB in
#               16-bit types) in float16, bfloat16 and float32, with the copy roofline measured in
#               the same run and the PyTorch baselines; OUTDIR/bench.json and bench.md
#
# OUTDIR gets summary.md (one row per step: status, seconds, log), steps.json, info.txt,
# tests.xml, bench.json, bench.md and logs/STEP.log. The steps together stay under
# GPU_PROOF_BUDGET seconds (default 470, under 8 minutes): a step gets what is left if that is
# less than its own limit, and none is started with under 10 s left.
#
# --dry-run runs here, without a GPU, every step that can: info; precompile lists the modules;
# tests collects the GPU selection (so its files and -k expression are checked) and runs a small
# part of it on the cuda-emulator backend; torch-tests collects the fastact.torch tests (or says that
# torch is not installed, as in the README's plain test install); the sanitizer steps print the commands they would run
# and run the probe on the emulator; bench runs the same command on the emulator for relu and
# softmax (the probe covers the other kernels) at 4096 elements with 2 timed calls.
# tests/test_gpu_proof.py runs it.
set -uo pipefail

usage() { echo "usage: bash bench/gpu_proof.sh OUTDIR [--dry-run]" >&2; exit 2; }
OUT="" DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    -*) usage ;;
    *) [ -z "$OUT" ] || usage; OUT="$arg" ;;
  esac
done
[ -n "$OUT" ] || usage

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$OUT/logs" || exit 2
OUT="$(cd "$OUT" && pwd)"
cd "$REPO" || exit 2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
BUDGET="${GPU_PROOF_BUDGET:-470}"
START=$(date +%s)
: > "$OUT/logs/steps.tsv"
MODE=$([ "$DRY" = 1 ] && echo dry-run || echo gpu)

# The CUDA tests: whole files whose module name says cuda, and the cuda-parametrized cases of the
# shared suites (their ids name the backend). test_cuda_compile.py (CI compiles everything for
# sm_80 and sm_90 already) and test_cuda_emulator*.py (CPU only) are left out.
TEST_FILES=(tests/test_cuda_large.py tests/test_cuda_device.py tests/test_cuda_host_path.py
            tests/test_api.py tests/test_family.py tests/test_relu_family.py tests/test_prelu.py
            tests/test_fused.py tests/test_properties.py tests/test_functions.py tests/test_half.py
            tests/test_family_torch.py)
TEST_SELECTION="cuda and not emulator"
BENCH_OPS=(relu leaky_relu gelu silu mish softplus softmax prelu bias_act)

# run_step NAME LIMIT_SECONDS COMMAND...: run it under timeout, log to logs/NAME.log, record a row.
run_step() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  local log="$OUT/logs/$name.log"
  if [ "$left" -lt 10 ]; then
    echo "not run: the proof's ${BUDGET} s budget is spent" > "$log"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "skipped" "" "0" "$log" >> "$OUT/logs/steps.tsv"
    echo "== $name: skipped (budget spent)"
    return
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  echo "== $name (limit ${limit} s): $*"
  local t0 ms rc status seconds
  t0=$(date +%s%N)
  { echo "\$ $*"; echo; } > "$log"
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  seconds=$(printf '%d.%03d' $(( ms / 1000 )) $(( ms % 1000 )))
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$seconds" "$log" >> "$OUT/logs/steps.tsv"
  echo "   $status (exit $rc) after $seconds s"
}

find_sanitizer() {
  command -v compute-sanitizer 2>/dev/null && return
  local candidate
  for candidate in /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer \
                   /usr/local/cuda*/compute-sanitizer/compute-sanitizer; do
    [ -x "$candidate" ] && { echo "$candidate"; return; }
  done
}

# ---- info ------------------------------------------------------------------------------------
run_step info 30 bash -c "$PY -m fastact info; echo; (nvidia-smi || echo 'nvidia-smi: not here') 2>&1; \
  echo; echo 'git:' \$(git -C '$REPO' rev-parse HEAD 2>/dev/null || echo 'no git'); echo 'mode: $MODE'"
cp "$OUT/logs/info.log" "$OUT/info.txt"

# ---- precompile -------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  run_step precompile 60 "$PY" bench/precompile_cuda.py --list
else
  run_step precompile 120 "$PY" bench/precompile_cuda.py
fi

# ---- tests ------------------------------------------------------------------------------------
XDIST=()
if [ "$DRY" = 0 ] && "$PY" -c "import xdist" 2>/dev/null; then
  XDIST=(-n 8)
fi
if [ "$DRY" = 1 ]; then
  # The GPU selection, collected (checks the files and the expression), then a small part of the
  # same tests run for real on the emulator.
  run_step tests 120 bash -c "set -e; $PY -m pytest --collect-only -q -p no:cacheprovider ${TEST_FILES[*]} \
    -k '$TEST_SELECTION' | tail -1; FASTACT_BACKEND=cuda-emulator $PY -m pytest -q -p no:cacheprovider \
    --junitxml='$OUT/tests.xml' tests/test_cuda_device.py tests/test_cuda_large.py tests/test_relu_family.py \
    -k 'test_cuda_device or test_cuda_large or (cuda-emulator and float32 and contiguous and leaky)'"
else
  run_step tests 170 env FASTACT_BACKEND=cuda "$PY" -m pytest -q -p no:cacheprovider -rfE "${XDIST[@]}" \
    --junitxml="$OUT/tests.xml" "${TEST_FILES[@]}" -k "$TEST_SELECTION"
fi

# ---- torch-tests (the fastact.torch package, where it exists) ---------------------------------
TORCH_TESTS=()
if [ -e fastact/torch/__init__.py ] || [ -e fastact/torch.py ]; then
  for f in tests/test_torch*.py; do [ -e "$f" ] && TORCH_TESTS+=("$f"); done
fi
if [ ${#TORCH_TESTS[@]} -eq 0 ]; then
  run_step torch-tests 10 echo "no fastact.torch package (or no tests/test_torch*.py) in this checkout: nothing to run"
elif [ "$DRY" = 1 ] && ! "$PY" -c "import torch" 2>/dev/null; then
  # A dry run where torch is not installed (the README's plain test install): every torch test
  # would skip and the collection find nothing.  On a GPU the image has torch, and its absence fails.
  run_step torch-tests 10 echo "dry run: torch is not importable by $PY, so the fastact.torch tests cannot be collected here"
elif [ "$DRY" = 1 ]; then
  run_step torch-tests 60 "$PY" -m pytest --collect-only -q -p no:cacheprovider "${TORCH_TESTS[@]}"
else
  run_step torch-tests 60 env FASTACT_BACKEND=cuda "$PY" -m pytest -q -p no:cacheprovider -rfE "${TORCH_TESTS[@]}"
fi

# ---- compute-sanitizer --------------------------------------------------------------------------
SANITIZER="$(find_sanitizer)"
# --no-pool: plain cudaMalloc per array, so that memcheck sees each array's own bounds.
PROBE=("$PY" bench/cuda_probe.py --no-pool)
for tool in memcheck racecheck; do
  limit=$([ "$tool" = memcheck ] && echo 40 || echo 60)
  if [ "$DRY" = 1 ]; then
    run_step "$tool" 60 bash -c "echo 'would run: ${SANITIZER:-compute-sanitizer} --tool $tool --error-exitcode 1 ${PROBE[*]}'; \
      echo '(compute-sanitizer here: ${SANITIZER:-none found})'; $PY bench/cuda_probe.py --backend cuda-emulator"
  elif [ -z "$SANITIZER" ]; then
    run_step "$tool" 10 bash -c "echo 'compute-sanitizer not found (PATH, /usr/local/cuda*/bin): $tool not run'; exit 3"
  else
    run_step "$tool" "$limit" "$SANITIZER" --tool "$tool" --error-exitcode 1 "${PROBE[@]}"
  fi
done

# ---- bench ------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  run_step bench 90 "$PY" -m fastact bench --backend cuda-emulator --ops relu softmax \
    --dtypes float16 float32 --sizes 4096 --reps 2 --note "gpu_proof.sh --dry-run (emulator)" \
    --json "$OUT/bench.json" --markdown "$OUT/bench.md"
else
  run_step bench 150 "$PY" -m fastact bench --backend cuda --ops "${BENCH_OPS[@]}" \
    --dtypes float16 bfloat16 float32 --sizes '2**25' --note "bench/gpu_proof.sh" \
    --json "$OUT/bench.json" --markdown "$OUT/bench.md"
fi

# ---- summary ----------------------------------------------------------------------------------
TOTAL=$(( $(date +%s) - START ))
"$PY" - "$OUT" "$MODE" "$TOTAL" "$BUDGET" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path

out, mode, total, budget = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
steps = []
for line in (out / "logs" / "steps.tsv").read_text().splitlines():
    name, status, rc, seconds, log = line.split("\t")
    steps.append({"step": name, "status": status, "exit": int(rc) if rc else None,
                  "seconds": float(seconds), "log": str(Path(log).relative_to(out))})
tests = None
if (out / "tests.xml").is_file():
    try:
        root = ET.parse(out / "tests.xml").getroot()
        suites = [root] if root.tag == "testsuite" else list(root)
        tests = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    except ET.ParseError:
        tests = None
result = {"mode": mode, "total_seconds": total, "budget_seconds": budget, "steps": steps, "tests": tests,
          "all_ok": all(s["status"] == "ok" for s in steps)}
(out / "steps.json").write_text(json.dumps(result, indent=1) + "\n")
info = (out / "info.txt").read_text() if (out / "info.txt").is_file() else ""
gpu = next((line.strip() for line in info.splitlines() if "NVIDIA" in line and "|" in line), "no GPU line in info.txt")
lines = [f"# GPU proof ({mode})", "", f"{'all steps passed' if result['all_ok'] else 'SOME STEPS DID NOT PASS'}; "
         f"{total} s of a {budget} s budget. Device: {gpu}", "",
         "| step | status | exit | seconds | log |", "|---|---|---|---|---|"]
lines += [f"| {s['step']} | {s['status']} | {'' if s['exit'] is None else s['exit']} | {s['seconds']:.1f} | "
          f"[{s['log']}]({s['log']}) |" for s in steps]
if tests:
    lines += ["", f"Tests (tests.xml): {tests['tests']} run, {tests['failures']} failed, {tests['errors']} errors, "
                  f"{tests['skipped']} skipped."]
if (out / "bench.md").is_file():
    lines += ["", "Benchmark: [bench.md](bench.md) (all rows: bench.json)."]
lines += ["", "Made by `bash bench/gpu_proof.sh`; see CONTRIBUTING.md, \"The GPU proof\"."]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
