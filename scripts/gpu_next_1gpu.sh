#!/usr/bin/env bash
# For the next session that gets one H200: what 2026-12-04 left unrun on a GPU. The bench's FFN and other
# phases (new columns ffn_s, other_s) and the timeline's kernel grids (per projection) at the llama3-8b and
# deepseek-mla one-GPU points, the 1 x 32K llama point with the last kernel change (fused norm statistics
# in 2048-value steps), and the gRPC TTL against the engine alone (needs `.whl` carried).
set -u
LOG_NAME=next1 source scripts/gpu_env.sh
profile_one_gpu "1x8k 1x32k 1x128k"
say "llama3-8b 1 x 128K with pages of 64 tokens (helix bench's default before 2026-12-05; the engine's is 16)"
bench_rows bench-llama-1gpu-page64.json 200 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k --hopb 1 \
  --page-size 64
say "gRPC TTL against the engine alone"
timeout 200 python scripts/gpu_serve_check.py --gpus 1 --out "$out/serve-check-1gpu.json" > "$out/serve-check.log" 2>&1
grep '^{' "$out/serve-check.log" | tail -1 | tee -a "$log"
say done
