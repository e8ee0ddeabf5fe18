#!/usr/bin/env bash
# One H200: where the one-GPU decode step's time goes, kernel by kernel, with PDL's overlap taken out
# (helix_core/bench/timeline.py): llama3-8b at 1 x 8K and 1 x 128K, deepseek-mla (4 layers) at 1 x 32K.
set -u
LOG_NAME=timeline source scripts/gpu_env.sh
mkdir -p "$out/prof"
bench_rows bench-llama-1gpu-timeline.json 200 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x8k 1x128k \
  --hopb 1 --steps 100 --profile "$out/prof"
bench_rows bench-mla-1gpu-timeline.json 150 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k \
  --hopb 1 --steps 100 --profile "$out/prof"
head -40 "$out"/prof/timeline-* | tee -a "$log"
say done
