#!/usr/bin/env bash
# One H200: the GQA decode kernel at batch 1 against SDPA: its launch sweep at 128K keys, its default
# at 256K and 512K (where does it cross the speed issue's 4.2 TB/s?), and the same 32K / 128K
# problems with the pages laid out head-major (each head's keys of a page contiguous, as SDPA's
# contiguous cache reads them) instead of the engine's token-major layout. Results in ${OUT:-out}.
set -u
LOG_NAME=gqa-long source scripts/gpu_env.sh
keep() { grep -E "^===|  (default|bn|best|torch SDPA enable)" | sed -E 's/\| check ok.*//' | tee -a "$log"; }
for layout in "" --head-major; do
  say "bench_decode GQA batch 1 x 32768 $layout, sweep"
  timeout 150 python -m helix_core.kernels.bench_decode --context 32768 --batch 1 --no-baseline $layout \
    --json "$out/kernel-gqa-32768${layout}.json" 2>&1 | keep
  say "bench_decode GQA batch 1 x 131072 $layout, sweep"
  timeout 150 python -m helix_core.kernels.bench_decode --context 131072 --batch 1 --no-baseline $layout \
    --json "$out/kernel-gqa-131072${layout}.json" 2>&1 | keep
done
for ctx in 262144 524288; do
  say "bench_decode GQA batch 1 x $ctx"
  timeout 100 python -m helix_core.kernels.bench_decode --context $ctx --batch 1 --no-baseline --no-sweep \
    --json "$out/kernel-gqa-$ctx.json" 2>&1 | keep
done
say "bench_decode GQA batch 8 x 65536 (the llama3-8b 8 x 128K step's helix shard), both layouts"
for layout in "" --head-major; do
  timeout 100 python -m helix_core.kernels.bench_decode --context 65536 --batch 8 --no-baseline --no-sweep $layout \
    --json "$out/kernel-gqa-8x65536${layout}.json" 2>&1 | keep
done
say done
