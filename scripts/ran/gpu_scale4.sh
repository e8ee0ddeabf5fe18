#!/usr/bin/env bash
# Issue 7 on 4 H200s (nvidia-h200-x4), one call per part: `bash scripts/ran/gpu_scale4.sh a` (NCCL
# exactness of the 4-GPU plans), `b` (mqa-8b and deepseek-mla, where TP duplicates KV, and the
# longest llama3-8b context), `c` (llama3-8b, where Helix should tie TP; the 16 x 512 example).
# Results in ${OUT:-out}: verify4-*.json, bench-4gpu-*.json and scale4-<part>.log.
set -u
part=${1:?part a, b or c}
LOG_NAME=scale4-$part source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader >> "$log"
v() { name=$1; shift; say "helix verify $name $*"
      timeout 330 python -m helix_core.verify --device cuda --dtype bfloat16 --steps 32 --out "$out/verify4-$name.json" "$@" \
        2>&1 | grep -E '^\{|Error|error' | tee -a "$log"; }
b() { name=$1; shift; say "helix bench $*"
      timeout 290 python -m helix_core.bench.main --timeout 280 --json "$out/bench-4gpu-$name.json" "$@" 2>&1 | quiet | tee -a "$log"; }
MHA16='{"num_attention_heads":16,"num_key_value_heads":16,"head_dim":8}'
# Measured on the first x4 call: about 70 s per plan of process start, compile and capture, so
# the parts are cut to what one 10-minute call holds.
if [ "$part" = a ]; then
  v llama --arch llama --plan helix:kvp=4,tpa=1 --plan helix:kvp=2,tpa=2 --plan tp:n=4
  v qwen2 --arch qwen2 --plan helix:kvp=1,tpa=4
  v dsv3 --arch deepseek_v3 --plan helix:kvp=4,tpa=1 --plan helix:kvp=4,tpa=1,ep=4 --plan tp:n=4
  v mha16 --arch llama --overrides "$MHA16" --plan headslice:n=4,m=1 --plan headslice:n=2,m=2 \
    --plan headslice:n=1,m=4 --plan helix:kvp=4,tpa=1
elif [ "$part" = b ]; then
  # TP on 4 GPUs holds the one KV head (mqa) or the one latent (MLA) 4 times; Helix KVP=4 once
  b mqa --shape mqa-8b --plans helix:kvp=4,tpa=1 tp:n=4 --points 4x1m --hopb 1 2 --steps 50
  b mla --shape deepseek-mla --layers 4 --plans helix:kvp=4,tpa=1 tp:n=4 --points 4x1m --hopb 1 --steps 50
  # the longest single llama3-8b sequence on 4 GPUs (KV pool from free memory, as `helix serve` sizes it)
  b max --shape llama3-8b --plans helix:kvp=4,tpa=1 --points 1xmax --hopb 1 --steps 30 --warmup 3
else
  # 8 KV heads: TP on 4 GPUs duplicates nothing, Helix should tie; then the 16 x 512 example
  b llama --shape llama3-8b --plans helix:kvp=4,tpa=1 tp:n=4 --points 1x128k 8x128k --hopb 1 --steps 50
  b mha16 --shape mha16x512 --layers 8 --dtype fp16 --plans headslice:n=2,m=2 helix:kvp=4,tpa=1 \
    --points 8x10000 --hopb 1 --steps 50
  v mha16 --arch llama --overrides "$MHA16" --plan headslice:n=2,m=2 --plan headslice:n=1,m=4
fi
say done
