#!/usr/bin/env bash
# Second call of the gather session on 2 H200s: TP baselines for the gather rows, per-kernel
# profiles of the 1 x 128K step, a stopped shard with the symm-mem collectives, and the scaled
# 16 x 512 example. Results in ${OUT:-out}.
set -u
LOG_NAME=profile source scripts/gpu_env.sh
mkdir -p "$out/prof"
b() { say "helix bench $*"; timeout 150 python -m helix_core.bench.main --json "$out/bench-gather2.json" "$@" 2>&1 | quiet | tee -a "$log"; }
b --shape mqa-8b --plans tp:n=2 --points 4x1m --hopb 1
b --shape llama3-8b --plans tp:n=2 helix:kvp=2,tpa=1 --points 1x128k --hopb 1 --profile "$out/prof"
b --shape llama3-8b --plans tp:n=2 --points 8x128k --hopb 1
say "stopped shard (SIGSTOP) with symm-mem all-reduce and gather"
timeout 200 python scripts/gpu_serve_check.py --out "$out/serve-stop-gather.json" --fault stop --skip-ttl 2>&1 | grep '^{' | tail -1 | tee -a "$log"
say "mha16x512 scaled"
timeout 200 python -m helix_core.bench.main --json "$out/bench-mha16.json" --shape mha16x512 --layers 8 --dtype fp16 \
  --plans headslice:n=2,m=1 helix:kvp=2,tpa=1 headslice:n=1,m=2 --points 8x10000 --hopb 2 --steps 50 2>&1 | quiet | tee -a "$log"
cd "$out" && tar czf prof.tgz prof && rm -rf prof
say done
