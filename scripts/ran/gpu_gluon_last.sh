#!/usr/bin/env bash
# Last check of the third session of 2026-12-04 on one H200, on the committed code: the Gluon MLA kernel's GPU
# tests with the decode kernel and launch tests compiled, bench_decode at two MLA points, and the one-GPU
# deepseek-mla step.
set -u
LOG_NAME=gluon-last source scripts/gpu_env.sh
say "gluon MLA GPU tests, decode kernel and launch tests compiled"
timeout 240 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py tests/test_kernels_decode.py \
  tests/test_decode_launch.py 2>&1 | tail -3 | tee -a "$log"
kernel_points mla128-p64 90 "4x131072 4x524288" --mla --no-sweep --page-size 64 --iters 100
say "helix bench deepseek-mla 4 layers 1 x 32K, one GPU"
bench_rows bench-mla-1gpu.json 200 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k \
  --hopb 1 --steps 100
say done
