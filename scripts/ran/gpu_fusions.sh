#!/usr/bin/env bash
# One H200: the decode step's fusions (batch-1 norms and SiLU gate inside the one-row projection kernel,
# PDL between those kernels, RoPE + KV append in one kernel). Kernel tests compiled on the GPU; the
# one-GPU steps with and without them (same call); exactness against HF with CUDA graphs at batch 1
# (where the fused projections run) and 3; the gRPC TTL with the pipelined scheduler; then the wide-head
# look-ahead sweep (gpu_wide_ahead.sh).
set -u
LOG_NAME=fusions source scripts/gpu_env.sh
say "kernel tests (compiled)"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_small_linear.py tests/test_rope_append.py tests/test_pipelined_decode.py 2>&1 \
  | tail -3 | tee -a "$log"
for fusions in auto off; do
  say "helix bench llama3-8b one GPU, fusions $fusions"
  bench_rows bench-llama-1gpu-fusions.json 150 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k 1x8k --hopb 1 --steps 100 --fusions $fusions
done
for batch in 1 3; do
  say "verify llama bf16 batch $batch, one GPU, CUDA graphs"
  verify_rows verify-llama-bf16-b$batch.json 120 --arch llama --dtype bfloat16 --steps 16 --batch $batch --plan helix:kvp=1,tpa=1
done
for fusions in auto off; do
  say "helix bench deepseek-mla 4 layers one GPU, fusions $fusions"
  bench_rows bench-mla-1gpu-fusions.json 120 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k --hopb 1 --steps 100 --fusions $fusions
done
say "gRPC TTL against the engine alone (pipelined steps), 1 GPU"
timeout 150 python scripts/gpu_serve_check.py --out "$out/serve-check-1gpu.json" --gpus 1 2>&1 | grep '^{' | tail -1 \
  | tee -a "$log"
say "wide heads with the block table a tile ahead"
bash scripts/ran/gpu_wide_ahead.sh
say done
