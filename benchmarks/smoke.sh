#!/usr/bin/env bash
# Smoke run of every benchmark: each at a toy size (its --smoke flag; seconds each, about a minute
# and a half in all on 2 cores), to check that it still runs, not what it measures. Outputs go to a
# temporary folder, removed at the end: nothing under benchmarks/results/ or data/ is written (the
# script fails if anything under data/ changed). Run from anywhere, in the project's environment:
#     bash benchmarks/smoke.sh
# Stops at the first benchmark that fails (or runs past SMOKE_TIMEOUT seconds, default 300), names
# it, shows the end of its output and exits with its status. SMOKE_KEEP=1 keeps the folder.
# Torch runs on SMOKE_THREADS intra-op threads (default 1): on a shared machine two threads on toy
# sizes spin against each other (measured: the connect smoke 9 s with 1 thread, 44–93 s with 2
# while other processes held the cores); the smoke checks that the code runs, not its speed.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${SMOKE_THREADS:-1} MKL_NUM_THREADS=${SMOKE_THREADS:-1}
PY=${PYTHON:-python}
limit=${SMOKE_TIMEOUT:-300}
out=$(mktemp -d "${TMPDIR:-/tmp}/landscape-smoke.XXXXXX")
if [ "${SMOKE_KEEP:-0}" = 1 ]; then trap 'echo "smoke: outputs kept in $out"' EXIT; else trap 'rm -rf "$out"' EXIT; fi
touch "$out/.start"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { printf '%d.%d' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }

# run LABEL SCRIPT ARGS…: benchmarks/SCRIPT.py ARGS… --out $out/LABEL.json, timed; stop on failure
run() {
  local label=$1 script=$2 rc=0 t0 dt
  shift 2
  t0=$(ms)
  timeout "$limit" "$PY" "benchmarks/$script.py" "$@" --out "$out/$label.json" > "$out/$label.log" 2>&1 || rc=$?
  dt=$(( $(ms) - t0 ))
  if [ "$rc" = 0 ] && ! "$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$out/$label.json" 2>>"$out/$label.log"; then
    echo "($script wrote no readable $out/$label.json)" >> "$out/$label.log"
    rc=1
  fi
  if [ "$rc" != 0 ]; then
    printf '  %-22s FAILED after %s s (exit %s%s); the end of its output:\n' "$label" "$(secs "$dt")" "$rc" \
      "$([ "$rc" = 124 ] && echo ", over SMOKE_TIMEOUT=$limit s")" >&2
    tail -n 40 "$out/$label.log" | sed 's/^/    /' >&2
    echo "smoke: FAILED: $label (benchmarks/$script.py $* --out …)" >&2
    exit "$rc"
  fi
  printf '  %-22s %6s s\n' "$label" "$(secs "$dt")"
}

echo "benchmark smoke run ($($PY -c 'import torch; print(torch.get_num_threads())') torch threads), outputs in $out:"
total=$(ms)
run small_p        bench_small_p      --smoke
run engines        bench_engines      --smoke
run overhead       bench_overhead     --smoke
run roofline       bench_roofline     --smoke
run paper          bench_paper        --smoke
# the path benchmarks/device_check.sh takes (spectra at d = 30, dense and Lanczos)
run paper-spectrum bench_paper        --quick --skip throughput pele fidelity ts flow
run connect        bench_connect      --smoke
run pele_connect   bench_pele_connect --smoke
run lambda_batch   bench_lambda_batch --smoke
run net            bench_net          --smoke
run sweep          bench_sweep        --smoke
run kink_faithful  bench_kink_faithful --smoke

changed=$(find data -newer "$out/.start" 2>/dev/null | head -n 20)
if [ -n "$changed" ]; then
  echo "smoke: FAILED: files under data/ changed during the run (a benchmark wrote there, or another process used this tree meanwhile):" >&2
  echo "$changed" | sed 's/^/    /' >&2
  exit 1
fi
echo "smoke: all benchmarks ran in $(secs $(( $(ms) - total ))) s"
