#!/usr/bin/env bash
# Exactness on 2 GPUs with NCCL: bf16/fp16 teacher-forced against an fp32 HF reference, and fp32
# free-running against HF. Results (JSON lines) go to ${OUT:-out}/verify-*.json.
set -u
LOG_NAME=verify source scripts/gpu_env.sh
run() { name=$1; shift; timeout 240 python -m helix_core.verify --device cuda --out "$out/verify-$name.json" "$@" \
          2>&1 | grep -E '^\{|Error|error' | tee -a "$out/verify.log"; }
run llama-bf16 --arch llama --dtype bfloat16 --plan helix:kvp=2,tpa=1 --plan helix:kvp=1,tpa=2 --plan tp:n=2
run llama-fp32 --arch llama --dtype float32 --tolerance 1e-4 --plan helix:kvp=2,tpa=1 --plan tp:n=2
run qwen2-fp16 --arch qwen2 --dtype float16 --plan helix:kvp=2,tpa=1 --plan helix:kvp=1,tpa=2
run dsv3-bf16 --arch deepseek_v3 --dtype bfloat16 --plan helix:kvp=2,tpa=1 --plan helix:kvp=2,tpa=1,ep=2 --plan tp:n=2
run mha16-bf16 --arch llama --overrides '{"num_attention_heads":16,"num_key_value_heads":16,"head_dim":8}' \
    --dtype bfloat16 --plan headslice:n=1,m=2 --plan headslice:n=2,m=1 --plan helix:kvp=2,tpa=1
