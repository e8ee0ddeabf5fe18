#!/usr/bin/env bash
# One H200: at short contexts each MLA program reads the whole 128 x 576 query tile (147 KB), more than its
# keys at 1 x 4K (32 splits x 2 parts); the default's split count against a quarter and a sixteenth of
# one wave. Results in ${OUT:-out}.
set -u
LOG_NAME=mla-fewsplits source scripts/gpu_env.sh
kernel_points mla-fewsplits 40 "1x1024 1x4096 4x4096 1x16384 1x65536" --mla --only bn32/bh128/w8/s2 --iters 100 --repeats 3
say done
