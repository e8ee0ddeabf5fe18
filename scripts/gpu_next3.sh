#!/usr/bin/env bash
# After scripts/gpu_next.sh and gpu_next2.sh, on 2 H200s (split out of gpu_next.sh on 2026-12-05, second session,
# so each call fits 10 minutes): helix verify in fp32 (tolerance 1e-4) at batch 1 for helix KVP=2 and TP=2, and
# DeepSeek-V3 bf16 at batch 1; then mqa-8b at 4 x 1M with the replicated o projection, and profiled with HOP-B
# off and on. (Its L2-prefetch rows were dropped: on one H200 on 2026-12-05 the prefetch made o -> all-reduce
# stand-in -> gate/up slower at every amount; docs/benchmarks.md.)
# Results in $OUT (the log, and results.tgz: gpu_env.sh).
set -u
LOG_NAME=next3 source scripts/gpu_env.sh
say "helix verify, llama fp32, helix KVP=2 and TP=2, batch 1"
verify_rows verify-batch1-llama-fp32.json 120 --arch llama --dtype float32 --tolerance 1e-4 --steps 16 --batch 1 \
  --plan helix:kvp=2,tpa=1 --plan tp:n=2
say "helix verify, DeepSeek-V3 bf16, helix KVP=2, batch 1"
verify_rows verify-batch1-dsv3-bf16.json 120 --arch deepseek_v3 --dtype bfloat16 --steps 16 --batch 1 \
  --plan helix:kvp=2,tpa=1
# the mqa-8b target (helix 0.671 x TP on 2026-11-22): helix with the replicated o projection, which drops one of
# its three collectives a layer for 16 MB a layer more read (gpu_bench.sh has both plans with the default)
say "mqa-8b 4 x 1M, helix KVP=2, replicated o"
bench_rows bench-mqa-replicated-o.json 200 --shape mqa-8b --plans helix:kvp=2,tpa=1 --points 4x1m --hopb 1 \
  --o-projection replicated
# HOP-B: two pieces made the mqa-8b 4 x 1M step 1.8 ms slower in compute alone (2026-11-22: compute-only 13.84
# against 12.00 ms, the attention phase, then one kernel over the whole batch, the same 8.9 ms), so the overlap
# never paid; the phases now run per piece, and the per-kernel profiles of both say where those 57 us a layer go
say "mqa-8b 4 x 1M, helix KVP=2, HOP-B 1 and 2 pieces, profiled"
bench_rows bench-mqa-hopb.json 200 --shape mqa-8b --plans helix:kvp=2,tpa=1 --points 4x1m --hopb 1 2 \
  --profile "$out/prof-hopb"
say done
