#!/usr/bin/env bash
# The CUDA check, for a GPU machine: under 8 minutes in all.
#   1. the CUDA tests (tests/test_cuda.py, tests/test_kernels.py) under eager and inductor,
#      and the replay of the corpus's CUDA entries and their repro scripts;
#   2. a 2-minute `sdpa-fuzz run --device cuda --backend inductor` (confirming may take longer);
#   3. a table per kernel eager ran: cases, findings, and the worst compiled/eager error
#      ratio per quantity (what the fudge factors bound).
# Uses the machine's own torch; PYTHON picks the interpreter, OUT the output folder.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-gpu-check-out}
mkdir -p "$OUT_DIR"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$PY" -c "import torch, hypothesis; print('torch', torch.__version__, '| hypothesis', \
hypothesis.__version__, '|', torch.cuda.get_device_name())" || exit 2

t0=$SECONDS
HYPOTHESIS_PROFILE=ci timeout -s INT 270 "$PY" -m pytest -q -p no:cacheprovider -n 6 -rs \
    --durations=5 tests/test_cuda.py tests/test_kernels.py --backend eager --backend inductor \
    2>&1 | tee "$OUT_DIR/pytest.log" | tail -40
tests_rc=${PIPESTATUS[0]}
echo "tests: exit $tests_rc in $((SECONDS - t0)) s"

cuda_entries=$(grep -l '"device": "cuda"' corpus/*.json)
"$PY" -m fuzz.cli replay $cuda_entries 2>&1 | tail -5
for entry in $cuda_entries; do
    "$PY" "${entry%.json}.py" > /dev/null 2>&1; echo "repro ${entry%.json}.py: exit $?"
done

t0=$SECONDS
# --foreground: the driver alone gets the interrupt (it stops its workers itself); a second
# SIGINT to the whole group once aborted it before it wrote its report.
timeout --foreground -s INT -k 30 240 "$PY" -m fuzz.cli run --device cuda --backend inductor --time-budget 120 \
    --workers 6 --known corpus --corpus "$OUT_DIR/corpus" --report "$OUT_DIR/report.json" \
    > "$OUT_DIR/fuzz.log" 2>&1
fuzz_rc=$?
tail -15 "$OUT_DIR/fuzz.log"
echo "fuzz: exit $fuzz_rc in $((SECONDS - t0)) s"

"$PY" - "$OUT_DIR/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"\n{r['examples']} cases, {r['programs']} programs in {r['elapsed_s']} s: "
      f"{r['cases_per_s']} cases/s on {r['workers']} workers; {len(r['failures'])} findings, "
      f"{len(r['flaky'])} flaky")
print(f"\n| kernel | cases | findings |\n|---|---:|---:|")
for k, row in r["kernels"].items():
    print(f"| {k} | {row['cases']} | {row['findings']} |")
print(f"\n| quantity@kernel | worst compiled/eager error ratio |\n|---|---:|")
for q, ratio in r["error_ratio_max"].items():
    print(f"| {q} | {ratio} |")
print("\nfindings:")
for f in r["failures"]:
    print(" ", f["signature"], "|", f["explanation"].splitlines()[0][:150])
PY
