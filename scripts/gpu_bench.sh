#!/usr/bin/env bash
# The benchmark of docs/benchmarks.md on 2 H200s (one call). Results: ${OUT:-out}/bench-*.json, bench.log.
set -u
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
out=${OUT:-out}; mkdir -p "$out"
b() { echo "== helix bench $*"; timeout 200 python -m helix_core.bench.main --json "$out/bench-2gpu.json" "$@" 2>&1 \
        | grep -v -E "frame #|TCPStore|^\s*$|RoPE scaling factor"; }
# llama3-8b: Helix vs TP on 2 GPUs (8 KV heads: Helix can at best tie), HOP-B on and off
b --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 1x128k 8x128k 1x1m --hopb 2 1
# mqa-8b and deepseek-mla at batch x context = 4M: TP duplicates the KV, Helix does not
b --shape mqa-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 4x1m --hopb 2 1
b --shape deepseek-mla --layers 4 --plans helix:kvp=2,tpa=1 tp:n=2 --points 4x1m --hopb 2
# one GPU against HF transformers (static cache)
b --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k --peer hf --steps 50
b --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k --peer hf --steps 50
# the 16 x 512 reference example, scaled to 2 GPUs (8 of 32 layers, batch 8, context 10000)
b --shape mha16x512 --layers 8 --dtype fp16 --plans headslice:n=1,m=2 headslice:n=2,m=1 helix:kvp=2,tpa=1 \
  --points 8x10000 --hopb 2 --steps 50
