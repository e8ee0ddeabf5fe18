#!/usr/bin/env bash
# One H200, after gpu_fusions.sh (whose benches ran out of KV pages: the bench now also runs the launched
# steps): the one-GPU steps with and without the fusions, both timed one step at a time and with each
# step launched before the previous one is finished; the new wide-head default (kernel tests compiled,
# then timed against SDPA at the helix ranks of the 16 x 512 example).
set -u
LOG_NAME=fusions2 source scripts/gpu_env.sh
say "decode kernel tests (compiled): wide heads, block-table modes"
timeout 200 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py -k "wide or ahead" 2>&1 | tail -2 \
  | tee -a "$log"
mkdir -p "$out/prof"
for fusions in auto off; do
  say "helix bench llama3-8b one GPU, fusions $fusions"
  extra=""; [ $fusions = auto ] && extra="--profile $out/prof"
  bench_rows bench-llama-1gpu-fusions.json 150 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k 1x8k --hopb 1 --steps 100 --fusions $fusions $extra
done
for fusions in auto off; do
  say "helix bench deepseek-mla 4 layers one GPU, fusions $fusions"
  bench_rows bench-mla-1gpu-fusions.json 120 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k --hopb 1 --steps 100 --fusions $fusions
done
kernel_points mha512-default 90 "8x5000 8x2500" --heads 16 --kv-heads 16 --dim 512 --dtype fp16 --only default \
  --iters 100 --repeats 3
cd "$out" && tar czf prof.tgz prof && rm -rf prof
say done
