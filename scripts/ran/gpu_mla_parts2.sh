#!/usr/bin/env bash
# One H200, after gpu_mla_parts.sh: the long-context MLA default with its values in two parts (128-head
# blocks, 8 warps) against the old default (64 heads, one part) and neighbours, at 4 x 128K, 1 x 128K,
# 1 x 32K and 1 x 16K; then the deepseek-mla step (4 layers, one GPU) at 1 x 32K and 4 x 128K, and
# the llama3-8b step at 1 x 128K on one GPU.
set -u
LOG_NAME=mla-parts2 source scripts/gpu_env.sh
say "kernel tests on the GPU"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_decode_launch.py -x 2>&1 \
  | tail -3 | tee -a "$log"
kernel_points mla-parts2 90 "4x131072 1x131072 1x32768 1x16384" --mla --only /p --iters 60 --repeats 3
say "helix bench deepseek-mla, 4 layers, one GPU"
timeout 200 python -m helix_core.bench.main --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 \
  --points 1x32k 4x128k --hopb 1 --steps 100 --json "$out/bench-mla-1gpu-parts.json" 2>&1 | quiet \
  | grep -E "^\||shape|roofline|check" | tee -a "$log"
say "helix bench llama3-8b 1 x 128K, one GPU (the tiled merge kernel in the step)"
timeout 150 python -m helix_core.bench.main --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k --hopb 1 \
  --steps 100 --json "$out/bench-llama-1gpu-128k.json" 2>&1 | quiet | grep -E "^\||shape|roofline|check" | tee -a "$log"
say done
