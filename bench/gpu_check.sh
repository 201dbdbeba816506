#!/usr/bin/env bash
# One short run on a GPU machine: install chainrule, run the GPU tests and the stand-in
# device's tests, time nanoGPT (bench/gpu_nanogpt.py), and end with one line:
#   gpu: chainrule X ms/iter, torch eager Y, ratio R; tests P/T
# Usage: bash bench/gpu_check.sh OUTDIR   (everything goes to OUTDIR/gpu_check.log)
# Each stage has its own time limit; a stage that fails still lets the final line print.
set -u
OUT="${1:-gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
PY="${PYTHON:-python3}"
say() { echo "== $(date +%H:%M:%S) $*" | tee -a "$LOG"; }

say "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
  "$PY" -c "import sys; print(sys.version)"
  "$PY" -c "import cupy; print('cupy', cupy.__version__)" 2>&1 || true
  "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" 2>&1 || true
} >> "$LOG" 2>&1

say "install"
if [ "${SKIP_INSTALL:-0}" != "1" ]; then
timeout 180 "$PY" -m pip install --no-deps --no-build-isolation -e . >> "$LOG" 2>&1 \
  || say "install failed (status $?); using the source tree"
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

HAVE_GPU=$("$PY" -c "import chainrule; print(int(chainrule.cuda.is_available()))" 2>>"$LOG" || echo 0)
say "chainrule sees a GPU: $HAVE_GPU"

PASSED=0; TOTAL=0
count() {  # add a pytest summary's passed / failed / errors to the totals
  local line="$1" p f e
  p=$(echo "$line" | grep -o '[0-9]* passed' | grep -o '[0-9]*' || true)
  f=$(echo "$line" | grep -o '[0-9]* failed' | grep -o '[0-9]*' || true)
  e=$(echo "$line" | grep -o '[0-9]* error' | grep -o '[0-9]*' || true)
  PASSED=$((PASSED + ${p:-0})); TOTAL=$((TOTAL + ${p:-0} + ${f:-0} + ${e:-0}))
}
run_tests() {  # $1: label, $2: seconds, rest: test files
  local label="$1" secs="$2"; shift 2
  say "tests: $label"
  if "$PY" -c "import pytest" 2>/dev/null; then
    timeout "$secs" "$PY" -m pytest -q -p no:cacheprovider --junitxml="$OUT/$label.xml" "$@" \
      > "$OUT/$label.txt" 2>&1
    say "pytest status $?"
    cat "$OUT/$label.txt" >> "$LOG"
    count "$("$PY" - "$OUT/$label.xml" <<'PYEOF' 2>/dev/null || echo "0 failed"
import sys, xml.etree.ElementTree as ET
s = ET.parse(sys.argv[1]).getroot()
s = s if s.tag == "testsuite" else s.find("testsuite")
n, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(f"{n - f - e - k} passed, {f} failed, {e} error")
PYEOF
)"
  else  # no pytest: run each test function of the files with a tiny runner
    timeout "$secs" "$PY" - "$@" > "$OUT/$label.txt" 2>&1 <<'PYEOF'
import importlib.util, inspect, sys, tempfile, pathlib, traceback
sys.path.insert(0, "tests")
passed = total = 0
for path in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception:
        traceback.print_exc(); total += 1; continue
    for name, fn in vars(mod).items():
        if not name.startswith("test_") or not callable(fn):
            continue
        params = inspect.signature(fn).parameters
        if set(params) - {"tmp_path"}:
            continue  # parametrized or fixture-driven: needs pytest
        total += 1
        try:
            fn(**({"tmp_path": pathlib.Path(tempfile.mkdtemp())} if "tmp_path" in params else {}))
            passed += 1
        except Exception:
            print("FAILED", name); traceback.print_exc()
print(f"{passed} passed, {total - passed} failed")
PYEOF
    say "runner status $?"
    cat "$OUT/$label.txt" >> "$LOG"
    count "$(tail -n 1 "$OUT/$label.txt")"
  fi
}

if [ "$HAVE_GPU" = "1" ]; then
  run_tests cuda 240 tests/test_cuda.py
fi
run_tests stand_in 150 tests/test_strict_device.py tests/test_architecture.py

CM="n/a"; TE="n/a"; RATIO="n/a"
if [ "$HAVE_GPU" = "1" ]; then
  say "bench: nanoGPT shakespeare_char"
  timeout 240 "$PY" bench/gpu_nanogpt.py --data "$ROOT/../shared/data/tinyshakespeare.txt" \
    --iters 5 --rounds 3 --warmup 3 --gpt2-iters 2 --json "$OUT/gpu_nanogpt.json" \
    >> "$LOG" 2>&1
  say "bench status $?"
  if [ -s "$OUT/gpu_nanogpt.json" ]; then
    read -r CM TE RATIO < <("$PY" - "$OUT/gpu_nanogpt.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
c, t = d.get("chainrule_ms_per_iter"), d.get("torch_eager_ms_per_iter")
r = f"{c / t:.2f}" if c and t else "n/a"
print(c if c else "n/a", t if t else "n/a", r)
PYEOF
    ) || true
  fi
fi
echo "gpu: chainrule ${CM:-n/a} ms/iter, torch eager ${TE:-n/a}, ratio ${RATIO:-n/a}; tests ${PASSED}/${TOTAL}" | tee -a "$LOG"
