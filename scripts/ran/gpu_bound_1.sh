#!/usr/bin/env bash
# (A record: the two-part tile barriers of this call were removed after it; commit ce4cc38 holds them.)
# One GPU (an H200 where lent; the MLA target is set there): what bounds the MLA kernel's key loads, and a schedule
# change aimed at them (2026-12-06, fourteenth session).
# 1. the MLA kernel's GPU tests, with the new two-part loads (bitwise against one barrier a tile);
# 2. `gpu_gluon_mla.py bound`: L2's rate into all SMs (the L2 read probe), then the kernel with its MMAs or its key
#    loads switched off, the keys read from HBM and from a 12 MiB pool that L2 holds, at 1 x 128K and 4 x 512K with
#    128 heads (two head blocks read each key tile) and 4 x 512K with 64 heads (one block);
# 3. `gpu_gluon_mla.py two-parts`: each key tile landing in two parts against one barrier a tile, interleaved rounds,
#    one and ten launches a graph, against a matmul timed as long (1 x 128K: 70% of it asked);
# 4. the GQA kernel against torch's SDPA at 1 x 32K (ahead in every same-run comparison, 0.5% behind SDPA's best).
set -u
LOG_NAME=bound source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
say "MLA GPU tests"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -3 | tee -a "$log"
say "bound"
timeout 170 python scripts/gpu_gluon_mla.py bound 2>&1 | grep -E "bound|Error|error" | tee -a "$log"
say "two-parts"
timeout 150 python scripts/gpu_gluon_mla.py two-parts 2>&1 | grep -E "two-parts|Error|error" | tee -a "$log"
kernel_points gqa 60 "1x32768" --no-sweep
say done
