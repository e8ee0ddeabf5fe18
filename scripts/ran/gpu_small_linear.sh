#!/usr/bin/env bash
# The small-batch linear kernel on 2 H200s (one call): sweep against cuBLAS, kernel tests compiled,
# exactness of the engine with it against HF, then TTL with it on and off. Results in ${OUT:-out}.
# Its one run so far (docs/results/probe-small-linear-bn16.json) had the earlier default: 16 x 256
# tiles for up to 16 rows; the one-row config was then measured by gpu_small_linear2.sh.
set -u
LOG_NAME=small-linear source scripts/gpu_env.sh
b() { say "helix bench $*"; timeout 130 python -m helix_core.bench.main --json "$out/bench-small-linear.json" "$@" 2>&1 | quiet | tee -a "$log"; }
say "sweep"
timeout 150 python -m helix_core.kernels.bench_small_linear --json "$out/small-linear-sweep.json" 2>&1 | quiet | tee -a "$log"
say "kernel tests, compiled"
timeout 90 python -m pytest -q -p no:cacheprovider tests/test_small_linear.py 2>&1 | tail -3 | tee -a "$log"
say "verify with the kernel (bf16)"
timeout 100 python -m helix_core.verify --device cuda --arch llama --dtype bfloat16 --steps 16 \
   --plan helix:kvp=2,tpa=1 --plan tp:n=2 --out "$out/verify-small-linear.json" 2>&1 | grep -E '^\{|Error|error' | tee -a "$log"
b --shape llama3-8b --plans helix:kvp=2,tpa=1 --points 1x128k 8x128k --hopb 1 --small-linear on
b --shape llama3-8b --plans helix:kvp=2,tpa=1 --points 1x128k 8x128k --hopb 1 --small-linear off
b --shape llama3-8b --plans tp:n=2 --points 1x128k --hopb 1 --small-linear on
say done
