#!/usr/bin/env bash
# The sm_90 Gluon MLA kernel's numbers (third session of 2026-12-04), one H200: bench_decode's MLA points,
# 128 heads and 64 (deepseek-mla's TP=2 shard), pages of 64 and 16 keys, the default (Gluon) against the
# Triton kernel's default; then the one-GPU deepseek-mla step (4 layers, 1 x 32K).
set -u
LOG_NAME=gluon-bench source scripts/gpu_env.sh
kernel_points mla128-p64 90 "1x32768 1x131072 4x131072 4x524288" --mla --no-sweep --page-size 64 --iters 100
kernel_points mla128-p16 90 "1x131072 4x524288" --mla --no-sweep --page-size 16 --iters 100
kernel_points mla64-p64 90 "1x32768 4x131072 4x1048576" --mla --heads 64 --no-sweep --page-size 64 --iters 100
say "helix bench deepseek-mla 4 layers 1 x 32K, one GPU"
bench_rows bench-mla-1gpu.json 200 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k \
  --hopb 1 --steps 100
say done
