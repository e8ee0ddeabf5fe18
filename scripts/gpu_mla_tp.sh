#!/usr/bin/env bash
# One H200: (1) the MLA default with 128 heads (values in two parts at every length) at short lengths and
# the kernel and sm_90 report tests with the GPU machine's Triton; (2) the attention kernel of one GPU of
# deepseek-mla at batch 4 x 1M (4M tokens) under each 2-GPU plan: helix KVP=2 (128 heads over 512K keys
# a row) and TP=2 (64 heads over 1M keys), each with its sweep. Results in ${OUT:-out}.
set -u
LOG_NAME=mla-tp source scripts/gpu_env.sh
say "kernel tests on the GPU"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_decode_launch.py \
  tests/test_kernel_sm90.py -x 2>&1 | tail -3 | tee -a "$log"
keep() { grep -E "^===|  (default |bn|best)" | sed -E 's/\| check ok.*//' | tee -a "$log"; }
for point in "1 4096" "1 8192" "16 8192" "32 4096"; do
  set -- $point
  say "bench_decode MLA $1 x $2, default"
  timeout 40 python -m helix_core.kernels.bench_decode --mla --batch $1 --context $2 --no-baseline --no-sweep \
    --iters 100 --repeats 3 --json "$out/kernel-mla-default-$1x$2.json" 2>&1 | keep
done
say "helix KVP=2 rank: 128 heads, 4 x 512K"
timeout 120 python -m helix_core.kernels.bench_decode --mla --batch 4 --context 524288 --no-baseline --only /p \
  --iters 20 --repeats 3 --json "$out/kernel-mla-helix-4x512k.json" 2>&1 | keep
say "TP=2 rank: 64 heads, 4 x 1M"
timeout 200 python -m helix_core.kernels.bench_decode --mla --heads 64 --batch 4 --context 1048576 --no-baseline \
  --iters 20 --repeats 3 --json "$out/kernel-mla-tp-4x1m.json" 2>&1 | keep
say done
