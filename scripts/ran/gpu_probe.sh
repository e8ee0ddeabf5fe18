#!/usr/bin/env bash
# Probes for the speed work on 2 H200s (one call): the symmetric-memory all-reduce (exactness
# against HF, then TTL against NCCL), the kernels under pytest on the GPU, and the decode kernel's
# launch-config sweeps (GQA 32K, MQA 4 x 512K, MLA 32K). Results in ${OUT:-out}.
set -u
LOG_NAME=probe source scripts/gpu_env.sh
b() { say "helix bench $*"; timeout 240 python -m helix_core.bench.main --json "$out/bench-probe.json" "$@" 2>&1 | quiet | tee -a "$log"; }
say "verify, symmetric-memory all-reduce"
timeout 150 python -m helix_core.verify --device cuda --arch llama --dtype bfloat16 --steps 16 --all-reduce symm \
   --plan helix:kvp=2,tpa=1 --plan tp:n=2 --out "$out/verify-symm.json" 2>&1 | grep -E '^\{|Error|error' | tee -a "$log"
timeout 100 python -m helix_core.verify --device cuda --arch llama --dtype float32 --tolerance 1e-4 --steps 16 \
   --all-reduce symm --plan helix:kvp=2,tpa=1 --out "$out/verify-symm-fp32.json" 2>&1 | grep -E '^\{|Error|error' | tee -a "$log"
say "kernel tests, compiled"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_symm_all_reduce.py 2>&1 \
   | grep -E "Error|assert|passed|failed|FAILED" | head -40 | tee -a "$log"
b --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 1x128k 8x128k --hopb 1 --all-reduce symm
b --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 1x128k --hopb 1 --all-reduce nccl
b --shape mqa-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 4x1m --hopb 1 2 --all-reduce symm
