#!/usr/bin/env bash
# What the third run left unrun, for the next 2-H200 call: the engine's exactness at batch 1 with
# the one-row linear kernel (fp32 strict, bf16 against HF-in-bf16), the gRPC TTL and a stopped
# shard with the current defaults, the scaled 16 x 512 example on an uncontended GPU (headslice m = 2
# now on the sliced kernels: the planner predicts 3.53 ms for 2x2-like ranks against helix's 4.52), and
# the deepseek-mla target with the two-part MLA tiles of 2026-12-03 (one GPU's attention under helix
# KVP=2 measured at 0.73x TP=2's; the step estimated at about 0.79, unmeasured).
# (2026-12-04: every bench call here also runs the new FFN / other phases for the first time on 2 GPUs.
# Second session of 2026-12-04: TP=2's 64-head MLA shard now takes the P-through-memory tile, 20% faster
# alone on one H200, so one GPU's attention under helix KVP=2 is 0.93x TP=2's: expect the deepseek-mla
# ratio near 1 unless the rest of the step differs.)
# (Fifth session of 2026-12-04: the batch-1 KVP merge runs inside the o projection's kernel; the llama
# lines below measure the 1 x 128K step with it and without, and its bf16 exactness at KVP = 2; then with
# the o / down projections prefetching the next projection into L2 during their all-reduce, off by default.)
# Needs `.whl` carried (grpcio for the serving check). Results in ${OUT:-out}. Then scripts/gpu_bench.sh:
# the llama3-8b and mqa-8b 2-GPU targets have not run with the GQA kernel of the third session of
# 2026-12-03 (block table a tile ahead: 1 x 128K 127.7 against 133.9 us on one H200).
set -u
LOG_NAME=next source scripts/gpu_env.sh
v() { say "helix verify $*"; timeout 120 python -m helix_core.verify --device cuda "$@" 2>&1 | grep -E '^\{|Error|error' | tee -a "$log"; }
v --arch llama --dtype float32 --tolerance 1e-4 --steps 16 --batch 1 --plan helix:kvp=2,tpa=1 --plan tp:n=2 \
  --out "$out/verify-batch1-llama-fp32.json"
v --arch deepseek_v3 --dtype bfloat16 --steps 16 --batch 1 --plan helix:kvp=2,tpa=1 --out "$out/verify-batch1-dsv3-bf16.json"
say "gRPC TTL against the engine alone, then a stopped shard"
timeout 200 python scripts/gpu_serve_check.py --out "$out/serve-check.json" > "$out/serve-check.log" 2>&1
grep '^{' "$out/serve-check.log" | tail -1 | tee -a "$log"
timeout 200 python scripts/gpu_serve_check.py --out "$out/serve-stop.json" --fault stop --skip-ttl > "$out/serve-stop.log" 2>&1
grep '^{' "$out/serve-stop.log" | tail -1 | tee -a "$log"
say "mha16x512 scaled"
timeout 200 python -m helix_core.bench.main --json "$out/bench-mha16.json" --shape mha16x512 --layers 8 --dtype fp16 \
  --plans headslice:n=2,m=1 helix:kvp=2,tpa=1 headslice:n=1,m=2 --points 8x10000 --hopb 1 --steps 50 2>&1 | quiet | tee -a "$log"
say "llama3-8b 1 x 128K, helix KVP=2: the KVP merge inside the o projection (default) against a merge kernel"
for merge in auto off; do
  bench_rows "bench-merge-$merge.json" 200 --shape llama3-8b --plans helix:kvp=2,tpa=1 --points 1x128k --hopb 1 \
    --merge-in-projection $merge
done
say "the same with the o and down projections prefetching the projection after their all-reduce into L2"
for mib in 16 24; do
  bench_rows "bench-prefetch-$mib.json" 200 --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 1x128k --hopb 1 \
    --l2-prefetch-mib $mib
done
v --arch llama --dtype bfloat16 --steps 16 --batch 1 --plan helix:kvp=2,tpa=1 --out "$out/verify-batch1-llama-bf16.json"
say "deepseek-mla 4 layers, 4 x 1M, helix KVP=2 against TP=2"
timeout 300 python -m helix_core.bench.main --json "$out/bench-mla-2gpu.json" --shape deepseek-mla --layers 4 \
  --plans helix:kvp=2,tpa=1 tp:n=2 --points 4x1m --hopb 1 2>&1 | quiet | grep -E "^\||shape" | tee -a "$log"
say done
