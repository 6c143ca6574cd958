#!/usr/bin/env bash
# Builds the release binaries and runs the benchmarks (bench/bench.py);
# results go to bench/results.{json,md} and bench/chart.svg. Needs wrk
# (apt-get install wrk).
#   scripts/bench.sh                 10 s per wrk run
#   BENCH_DURATION=30s scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p runtime-fargate -p bench --bins
exec .venv/bin/python bench/bench.py "$@"
