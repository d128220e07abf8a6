#!/usr/bin/env bash
# Every benchmark in turn at its default sizes: stdout (JSON) to OUT/<name>.out (default
# runs/bench), stderr (table, progress) to OUT/<name>.txt. docs/results.md quotes such a run.
#   bash benchmarks/run_all.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/bench}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
for b in features continuum train evaluate selector; do
  echo "run_all: $(date -u +%H:%M:%S) bench_$b (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  "$PY" "benchmarks/bench_$b.py" > "$OUT/$b.out" 2> "$OUT/$b.txt"
done
echo "run_all: $(date -u +%H:%M:%S) done: $OUT/*.out" >&2
