#!/usr/bin/env bash
# Absorbed MLA in two passes (DecodeConfig(two_pass=True): tile probabilities to memory, then the softmax over
# tiles and P.V in value parts) against the one-pass defaults: compiled tests, per-pass kernel times, then
# bench_decode with 128 heads (helix KVP keeps all; 4 x 512K is one GPU's share of the deepseek-mla 2-GPU
# target) and 64 (TP=2's shard).
set -u
LOG_NAME=two_pass source scripts/gpu_env.sh
say "kernel tests compiled (two-pass MLA)"
timeout 240 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py -k "two_pass" 2>&1 | tail -4 \
  | tee -a "$log"
say "per-pass kernel times"
timeout 120 python scripts/two_pass_profile.py --batch 4 --context 524288 --heads 128 2>&1 | tail -4 | tee -a "$log"
kernel_points h128 90 "4x131072" --mla --only two-pass --iters 100 --repeats 3
kernel_points h128 120 "4x524288" --mla --only two-pass --iters 50 --repeats 3
say done
