#!/usr/bin/env bash
# Every benchmark, one after the other on a quiet machine; the output is also kept in
# benchmarks/results-<date>.txt. Extra arguments go to bench_finetune.py (e.g. --steps 40).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"
out="benchmarks/results-$(date +%Y-%m-%d).txt"
{
    "$python" benchmarks/bench_finetune.py --config all "$@"
    "$python" benchmarks/bench_inference.py
    "$python" benchmarks/bench_serve.py
    "$python" benchmarks/bench_distributed.py
} 2>&1 | tee "$out"
