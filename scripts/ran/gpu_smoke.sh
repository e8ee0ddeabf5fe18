#!/usr/bin/env bash
# First look on 2 GPUs: the fast path (Triton kernel + CUDA graphs + NCCL in graphs) against HF,
# then a short benchmark of each shape kind. Results go to ${OUT:-out}.
set -u
LOG_NAME=smoke source scripts/gpu_env.sh
t() { echo "== $*"; timeout "$@"; }
t 120 python -m helix_core.verify --device cuda --arch llama --dtype float32 --tolerance 1e-4 --steps 16 \
   --plan helix:kvp=2,tpa=1 --plan tp:n=2 --out "$out/verify-fast-llama-fp32.json" 2>&1 | grep -E '^\{|Error|error' 
t 120 python -m helix_core.verify --device cuda --arch deepseek_v3 --dtype bfloat16 --steps 16 \
   --plan helix:kvp=2,tpa=1,ep=2 --out "$out/verify-fast-dsv3-bf16.json" 2>&1 | grep -E '^\{|Error|error'
t 150 python -m helix_core.bench.main --shape llama3-8b --layers 4 --plans helix:kvp=2,tpa=1 tp:n=2 \
   --points 2x32k --steps 20 --hopb 1 2 --json "$out/bench-smoke.json" 2>&1 | tail -12
t 120 python -m helix_core.bench.main --shape deepseek-mla --layers 2 --plans helix:kvp=2,tpa=1 \
   --points 2x32k --steps 20 --hopb 2 --json "$out/bench-smoke.json" --peer hf 2>&1 | tail -8
