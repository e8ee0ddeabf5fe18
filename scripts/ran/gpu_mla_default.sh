#!/usr/bin/env bash
# One H200: the absorbed-MLA decode kernel's new default (64-head blocks, one program per SM, from
# 32K keys) at 1 x 32K, 1 x 128K and 4 x 128K, a sweep at 1 x 16K (below the switch), and the
# deepseek-mla step on one GPU (4 layers) at 1 x 32K and 4 x 128K through `helix bench`.
set -u
LOG_NAME=mla-default source scripts/gpu_env.sh
keep() { grep -E "^===|  (default |bn32/bh64/w8/s2 |bn32/bh16/w4/s2 |best)" | sed -E 's/\| check ok.*//' | tee -a "$log"; }
say "bench_decode MLA 1 x 16384, sweep"
timeout 120 python -m helix_core.kernels.bench_decode --mla --batch 1 --context 16384 --no-baseline --iters 60 \
  --repeats 3 --json "$out/kernel-mla-1x16384.json" 2>&1 | keep
kernel_points mla-default 90 "1x32768 1x131072 4x131072" --mla --no-sweep --iters 60 --repeats 3
say "helix bench deepseek-mla, 4 layers, one GPU"
timeout 200 python -m helix_core.bench.main --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 \
  --points 1x32k 4x128k --hopb 1 --steps 100 --json "$out/bench-mla-1gpu.json" 2>&1 | quiet | grep -E "^\||shape" | tee -a "$log"
say done
