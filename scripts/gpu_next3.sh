#!/usr/bin/env bash
# After scripts/gpu_next.sh and gpu_next2.sh, on 2 H200s (split out of gpu_next.sh on 2026-12-05, second session,
# so each call fits 10 minutes): helix verify in fp32 (tolerance 1e-4) at batch 1 for helix KVP=2 and TP=2, and
# DeepSeek-V3 bf16 at batch 1; then the 1 x 128K step with the o and down projections asking for the projection
# after their all-reduce in L2 (--l2-prefetch-mib, off by default), with the sharded and the replicated o.
# Results in ${OUT:-out}.
set -u
LOG_NAME=next3 source scripts/gpu_env.sh
verify_cuda --arch llama --dtype float32 --tolerance 1e-4 --steps 16 --batch 1 --plan helix:kvp=2,tpa=1 --plan tp:n=2 \
  --out "$out/verify-batch1-llama-fp32.json"
verify_cuda --arch deepseek_v3 --dtype bfloat16 --steps 16 --batch 1 --plan helix:kvp=2,tpa=1 --out "$out/verify-batch1-dsv3-bf16.json"
say "1 x 128K with the o and down projections prefetching the projection after their all-reduce into L2"
bench_rows bench-prefetch-16.json 200 --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 1x128k --hopb 1 \
  --l2-prefetch-mib 16
bench_rows bench-replicated-o-prefetch.json 200 --shape llama3-8b --plans helix:kvp=2,tpa=1 --points 1x128k --hopb 1 \
  --o-projection replicated --l2-prefetch-mib 16
say done
