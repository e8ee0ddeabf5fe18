#!/usr/bin/env bash
# The gather exchange on 2 H200s (one call): exactness against HF, then TTL with the gather
# against the NCCL all-to-all, same run. Results in ${OUT:-out}.
set -u
LOG_NAME=gather source scripts/gpu_env.sh
b() { say "helix bench $*"; timeout 150 python -m helix_core.bench.main --json "$out/bench-gather.json" "$@" 2>&1 | quiet | tee -a "$log"; }
say "verify, gather exchange (fp32, then bf16)"
timeout 100 python -m helix_core.verify --device cuda --arch llama --dtype float32 --tolerance 1e-4 --steps 16 \
   --plan helix:kvp=2,tpa=1 --out "$out/verify-gather-fp32.json" 2>&1 | grep -E '^\{|Error|error' | tee -a "$log"
timeout 100 python -m helix_core.verify --device cuda --arch deepseek_v3 --dtype bfloat16 --steps 16 \
   --plan helix:kvp=2,tpa=1 --out "$out/verify-gather-dsv3.json" 2>&1 | grep -E '^\{|Error|error' | tee -a "$log"
b --shape llama3-8b --plans helix:kvp=2,tpa=1 --points 1x128k 8x128k --hopb 1
b --shape llama3-8b --plans helix:kvp=2,tpa=1 --points 1x128k 8x128k --hopb 1 --exchange all_to_all
b --shape mqa-8b --plans helix:kvp=2,tpa=1 --points 4x1m --hopb 1
say "done"
