#!/usr/bin/env bash
# The second half of scripts/gpu_next.sh (split on 2026-12-05 so each fits one 10-minute call), on 2 H200s:
# the gRPC TTL and a stopped shard with the current defaults, the scaled 16 x 512 example (headslice m = 2 on
# the sliced kernels), and the deepseek-mla target (one GPU's attention under helix KVP=2 at 0.89x TP=2's
# with the sm_90 Gluon kernel, 2026-12-04; the 2-GPU step not measured since 2026-11-22), and the mqa-8b target
# (0.68 x TP) with the replicated o projection (2026-12-05).
# The two targets first (2026-12-05, second session: the serving checks last, their target is met).
# Needs `.whl` carried (grpcio for the serving check). Results in $OUT (the log, and results.tgz: gpu_env.sh).
set -u
LOG_NAME=next2 source scripts/gpu_env.sh
say "mqa-8b 4 x 1M, helix KVP=2 with the replicated o projection (its exchange of 4 rows gathers), TP=2 alongside"
bench_rows bench-mqa-replicated-o.json 300 --shape mqa-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 4x1m --hopb 1 2 \
  --o-projection replicated
say "deepseek-mla 4 layers, 4 x 1M, helix KVP=2 against TP=2"
timeout 300 python -m helix_core.bench.main --json "$out/bench-mla-2gpu.json" --shape deepseek-mla --layers 4 \
  --plans helix:kvp=2,tpa=1 tp:n=2 --points 4x1m --hopb 1 2>&1 | quiet | grep -E "^\||shape" | tee -a "$log"
say "mha16x512 scaled"
timeout 200 python -m helix_core.bench.main --json "$out/bench-mha16.json" --shape mha16x512 --layers 8 --dtype fp16 \
  --plans headslice:n=2,m=1 helix:kvp=2,tpa=1 headslice:n=1,m=2 --points 8x10000 --hopb 1 --steps 50 2>&1 | quiet | tee -a "$log"
say "gRPC TTL against the engine alone, then a stopped shard"
timeout 200 python scripts/gpu_serve_check.py --out "$out/serve-check.json" > "$out/serve-check.log" 2>&1
grep '^{' "$out/serve-check.log" | tail -1 | tee -a "$log"
timeout 200 python scripts/gpu_serve_check.py --out "$out/serve-stop.json" --fault stop --skip-ttl > "$out/serve-stop.log" 2>&1
grep '^{' "$out/serve-stop.log" | tail -1 | tee -a "$log"
say done
