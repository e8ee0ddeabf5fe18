#!/usr/bin/env bash
# One-GPU call (2026-12-06, fifteenth session): the MLA kernel's splits dealt evenly (lengths within a tile of each
# other) against ceil(tiles / splits) a split. At 1 x 128K both give the longest split 32 tiles, but evenly 128 of
# the 132 programs end a tile early and store their partials while the last 4 run their last tile, where now all
# 128 busy programs store theirs at once (the epilogues took 4.4 / 5.2 us on an H100 in the same session).
# 1. the two rules interleaved, 3 rounds, 1 and 10 launches a graph, with the matmul for the share;
# 2. the GPU tests of the even rule (attention over every key once, empty splits between the others);
# 3. the timeline at 1 x 128K and 1 x 32K, with the even rule as its last variant (the epilogues' times).
set -u
LOG_NAME=even-splits source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
say "even-splits"
timeout 150 python scripts/gpu_gluon_mla.py even-splits 2>&1 | grep -E "even-splits|Error|error" | tee -a "$log"
say "GPU tests"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py -k "even_splits or matches_fp32" 2>&1 \
  | tail -3 | tee -a "$log"
say "timeline"
timeout 150 python scripts/gpu_gluon_mla.py timeline 1,131072 1,32768 2>&1 | grep -E "timeline|Error|error" \
  | grep -v -E "barrier|merged" | tee -a "$log"
say done
