#!/usr/bin/env bash
# The next 2-H200 call, for the llama3-8b 1 x 128K target (0.61 of roofline on 2026-11-22, 0.70 asked): what
# the sessions since built for it and never ran on 2 GPUs, each with its exactness first.
# - the batch-1 KVP merge inside the o projection's kernel (fifth session of 2026-12-04; on by default):
#   `helix verify` bf16 at KVP = 2, batch 1, then the step with it and without;
# - the replicated output projection (2026-12-05, `--o-projection replicated`): each rank projects every
#   gathered head itself, so a 32-layer batch-1 step has 64 instead of 96 all-reduce-like collectives for
#   16 MB a layer read more: verify at batch 1 and 3, the step at 1 x 128K and 8 x 128K;
# - the latency of one small all-reduce in a CUDA graph by each path torch offers (helix_core/bench/collective_probe:
#   NCCL, the engine's symmetric-memory one-shot at 8.2 us on 2026-11-22, NCCL 2.27+'s symmetric kernels on a
#   window-registered buffer; if those, copies included, beat the one-shot, the step with `--all-reduce nccl-window`).
# The fp32 / DeepSeek verifies moved to scripts/gpu_next3.sh (2026-12-05, second session), so this call fits 10
# minutes. On one H200 the same day the merge in the projection was bitwise equal and 1.0 us a layer faster.
# Every bench call also runs the FFN / other phases on 2 GPUs for the first time. The rest of the former
# gpu_next.sh (serving checks, the 16 x 512 example, deepseek-mla) is scripts/gpu_next2.sh, so each fits one
# 10-minute call. Results in $OUT (the log, and results.tgz: gpu_env.sh). Then scripts/gpu_bench.sh: the llama3-8b
# and mqa-8b 2-GPU targets have not run with the GQA kernel of the third session of 2026-12-03 (1 x 128K 127.7
# against 133.9 us on one H200).
set -u
LOG_NAME=next source scripts/gpu_env.sh
say "helix verify, llama bf16, helix KVP=2, batch 1"
verify_rows verify-batch1-llama-bf16.json 120 --arch llama --dtype bfloat16 --steps 16 --batch 1 --plan helix:kvp=2,tpa=1
for batch in 1 3; do
  say "helix verify, llama bf16, helix KVP=2, batch $batch, replicated o"
  verify_rows "verify-batch$batch-llama-bf16-replicated-o.json" 120 --arch llama --dtype bfloat16 --steps 16 \
    --batch $batch --plan helix:kvp=2,tpa=1 --o-projection replicated
done
say "llama3-8b 1 x 128K, helix KVP=2: the KVP merge inside the o projection (default) against a merge kernel"
for merge in auto off; do
  bench_rows "bench-merge-$merge.json" 200 --shape llama3-8b --plans helix:kvp=2,tpa=1 --points 1x128k --hopb 1 \
    --merge-in-projection $merge
done
say "replicated o projection: 1 x 128K and 8 x 128K"
bench_rows bench-replicated-o.json 300 --shape llama3-8b --plans helix:kvp=2,tpa=1 --points 1x128k 8x128k --hopb 1 \
  --o-projection replicated
say "one small all-reduce inside a CUDA graph: NCCL, torch's one-shot (the engine's), NCCL's symmetric kernels"
timeout 300 python -m helix_core.bench.collective_probe --deadline 90 --json "$out/collectives.json" 2>&1 \
  | grep -E '^\{' | tee -a "$log"
# where NCCL's symmetric kernels, copies in and out included (what --all-reduce nccl-window runs), beat the one-shot
# at batch 1 with exact sums: the step with them, exactness first
if python - "$out/collectives.json" <<'PY'
import json, sys
rows = {(r["path"], r.get("size")): r for r in json.load(open(sys.argv[1]))}
window, one_shot = (rows.get((path, "o/ffn batch 1"), {}) for path in ("nccl-window-copy", "symm-one-shot"))
faster = window.get("exact") and one_shot.get("seconds_per_all_reduce", 0) > window.get("seconds_per_all_reduce", 1e9)
sys.exit(0 if faster else 1)
PY
then
  say "nccl-window beat the one-shot: the step with --all-reduce nccl-window"
  verify_rows verify-batch1-llama-bf16-nccl-window.json 120 --arch llama --dtype bfloat16 --steps 16 --batch 1 \
    --plan helix:kvp=2,tpa=1 --plan tp:n=2 --all-reduce nccl-window
  bench_rows bench-nccl-window.json 200 --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 1x128k --hopb 1 \
    --all-reduce nccl-window
fi
say done
