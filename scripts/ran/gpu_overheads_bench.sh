#!/usr/bin/env bash
# One H200, 2026-12-04: the benches of gpu_overheads.sh again after the bench's own fix (a renamed method),
# with per-kernel profiles and timelines.
set -u
LOG_NAME=overheads2 source scripts/gpu_env.sh
profile_one_gpu "1x8k 1x32k 1x128k"
