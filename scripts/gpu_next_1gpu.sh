#!/usr/bin/env bash
# For the next session that gets one H200: what 2026-12-04 left unrun on a GPU. The bench's FFN and other
# phases (new columns ffn_s, other_s) and the timeline's kernel grids (per projection) at the llama3-8b and
# deepseek-mla one-GPU points, the 1 x 32K llama point with the last kernel change (fused norm statistics
# in 2048-value steps). (Its page-64 step and gRPC TTL ran on 2026-12-05: scripts/ran/gpu_1gpu_1205.sh.)
set -u
LOG_NAME=next1 source scripts/gpu_env.sh
profile_one_gpu "1x8k 1x32k 1x128k"
say done
