#!/usr/bin/env bash
# (A record: the L2 look-ahead of this call was removed after it; commit cbd8793 holds it.)
# One GPU (an H200 where lent; the MLA target is set there): what bounds the MLA kernel's key loads, and a change
# aimed at them (2026-12-06, fourteenth session; the first call of the session, on an H100, found L2 feeding all SMs
# at 9.9 TB/s, the kernel's key loads 8-11% of a 1 x 128K launch, and two-part tile barriers no faster). Shortest
# first: a machine has come with little device time left.
# 1. `gpu_gluon_mla.py l2-ahead`: the key tiles asked of L2 2 or 4 tiles ahead of their TMA, against the default,
#    interleaved rounds, one and ten launches a graph, against a matmul timed as long (1 x 128K: 70% asked), each
#    round's outputs against the default's (bitwise);
# 2. `gpu_gluon_mla.py bound`: the L2 read probe, then the kernel with and without its key loads, the keys read from
#    HBM and from a 12 MiB pool that L2 holds (1 x 128K and 4 x 512K, 128 heads; 4 x 512K, 64 heads);
# 3. whether PROBE bits 4 + 2 (no MMAs) hang, as the first call's `bound` seemed to (1 x 32K, its own timeout);
# 4. the MLA kernel's GPU tests of the L2 look-ahead (pages of 64, 16 and 4; one split).
set -u
LOG_NAME=bound2 source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
say "l2-ahead"
timeout 100 python scripts/gpu_gluon_mla.py l2-ahead 1,131072 4,524288 1,32768 2>&1 | grep -E "l2-ahead|Error|error" \
  | tee -a "$log"
say "bound"
timeout 90 python scripts/gpu_gluon_mla.py bound 2>&1 | grep -E "bound|Error|error" | tee -a "$log"
say "probe bits 6, 1 x 32K"
timeout 35 python scripts/gpu_gluon_mla.py probe 128 1 32768 64 6 2>&1 | grep -E "probe|Error|error" | tee -a "$log"
echo "rc ${PIPESTATUS[0]}" | tee -a "$log"
say "MLA GPU tests: L2 look-ahead"
timeout 60 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py -k l2_look_ahead 2>&1 | tail -3 \
  | tee -a "$log"
say done
