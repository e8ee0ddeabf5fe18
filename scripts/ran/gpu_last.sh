#!/usr/bin/env bash
# The 16 x 512 reference example (scaled) and a hung shard under NCCL. Results in ${OUT:-out}.
set -u
LOG_NAME=last source scripts/gpu_env.sh
timeout 200 python scripts/gpu_serve_check.py --out "$out/serve-stop.json" --fault stop --skip-ttl 2>&1 | grep '^{' | tail -1
timeout 200 python -m helix_core.bench.main --json "$out/bench-mha16.json" --shape mha16x512 --layers 8 --dtype fp16 \
  --plans headslice:n=2,m=1 helix:kvp=2,tpa=1 headslice:n=1,m=2 --points 8x10000 --hopb 2 --steps 50 2>&1 | quiet
