#!/usr/bin/env bash
# Server scheduling knobs at one offered load, two runs each (reports/benchmark_notes.md, "Server").
#   bash reports/scripts/server_knobs.sh [QPS]      (default 410 = 0.75 x the tiny model's Offline rate)
# Each run: python -m harness run --scenario Server --model full --task xnli --duration 10
# --allow_invalid, with `full.Server.target_qps = QPS` appended to user.conf. Prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
QPS=${1:-410}
OUT=build/server_knobs
PY=${PY:-.venv/bin/python}
one() {  # name, then extra flags; env passes through
  local name=$1; shift
  local d=$OUT/$name; rm -rf "$d"; mkdir -p "$d"
  { cat user.conf; echo "full.Server.target_qps = $QPS"; } > "$d/user.conf"
  "$PY" -m harness run --scenario Server --model full --task xnli --duration 10 --allow_invalid \
    --user_conf "$d/user.conf" --output_dir "$d/out" "$@" > "$d/log" 2>&1
  "$PY" - "$name" "$d/out/full/xnli/Server/performance/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print(sys.argv[1], r["validity"], "completed", r["completed_qps"], "p99 ms",
      round(r["latency_ns"]["p99"] / 1e6, 1), "batches", r["sut_batches"], r["constraints_failed"])
PY
}
for rep in 1 2; do
  one "defaults-$rep"
  OMP_WAIT_POLICY=PASSIVE one "omp-passive-$rep"
  one "threads1-$rep" --threads 1
  one "workers2-$rep" --workers 2 --threads 1
  for w in 10 20 40; do one "wait$w-$rep" --max_wait_ms "$w"; done
done
