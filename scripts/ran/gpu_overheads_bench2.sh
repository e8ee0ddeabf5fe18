#!/usr/bin/env bash
# After gpu_overheads_bench.sh: the same llama3-8b one-GPU points with the split merge no longer letting the
# o projection launch early (it cost the step time there).
set -u
LOG_NAME=overheads3 source scripts/gpu_env.sh
mkdir -p "$out/prof"
bench_rows bench-llama-1gpu.json 200 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x8k 1x128k 1x32k \
  --hopb 1 --steps 100 --profile "$out/prof"
for f in "$out"/prof/timeline-*; do head -9 "$f" | cut -c1-140 | tee -a "$log"; tail -1 "$f" | tee -a "$log"; done
