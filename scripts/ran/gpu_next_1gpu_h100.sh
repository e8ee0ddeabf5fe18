#!/usr/bin/env bash
# For the next session that gets one H200: what 2026-12-04 left unrun on a GPU. The bench's FFN and other
# phases (new columns ffn_s, other_s) and the timeline's kernel grids (per projection) at the llama3-8b and
# deepseek-mla one-GPU points, the 1 x 32K llama point with the last kernel change (fused norm statistics
# in 2048-value steps). (Its page-64 step and gRPC TTL ran on 2026-12-05: scripts/ran/gpu_1gpu_1205.sh.)
# First the GQA kernel against SDPA at 1 x 32K and 1 x 128K (pages of 16), in one run. Then the mqa-8b target's
# kernels (helix 0.671 x TP on 2026-11-22, 0.6 asked): the helix rank's shard (32 query heads on one KV head,
# 4 x 512K keys) read at 4.05 TB/s alone, TP's (16 heads, 4 x 1M) at 4.24 inside its step; the look-ahead configs
# swept for the helix shard (only the in-tile ones were, in 2026-12-03's sweep), TP's default beside it.
set -u
LOG_NAME=next1 source scripts/gpu_env.sh
# the GQA kernel against torch's SDPA in the same run (its only unmet one-GPU target: tied at 1 x 32K)
kernel_points gqa 90 "1x32768 1x131072" --no-sweep
kernel_points mqa-tp 60 "4x1048576" --heads 16 --kv-heads 1 --no-sweep
kernel_points mqa-helix 150 "4x524288" --kv-heads 1 --only ahead1
profile_one_gpu "1x8k 1x32k 1x128k"
say done
