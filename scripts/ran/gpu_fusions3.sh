#!/usr/bin/env bash
# One H200, after gpu_gemv.sh: the one-row kernel loads a tile ahead where its grid is small
# (LinearConfig.ahead=None); its tests compiled, then the one-GPU steps (llama3-8b; deepseek-mla with and
# without the fusions again, as they cost it 1.4% in gpu_fusions2.sh).
set -u
LOG_NAME=fusions3 source scripts/gpu_env.sh
say "small-linear tests (compiled)"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_small_linear.py 2>&1 | tail -1 | tee -a "$log"
say "helix bench llama3-8b one GPU"
bench_rows bench-llama-1gpu-ahead.json 150 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k 1x8k \
  --hopb 1 --steps 100
for fusions in auto off auto; do
  say "helix bench deepseek-mla 4 layers one GPU, fusions $fusions"
  bench_rows bench-mla-1gpu-ahead.json 120 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 \
    --points 1x32k --hopb 1 --steps 100 --fusions $fusions
done
say done
