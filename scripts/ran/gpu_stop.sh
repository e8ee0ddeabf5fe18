#!/usr/bin/env bash
# A stopped (SIGSTOP) shard under `helix serve --device cuda` with the default symm-mem collectives,
# with the whole log; then mqa-8b Helix and TP on the same machine. Results in ${OUT:-out}.
set -u
LOG_NAME=stop source scripts/gpu_env.sh
echo "== $(date +%T) stop check"
timeout 200 python scripts/gpu_serve_check.py --out "$out/serve-stop-symm.json" --fault stop --skip-ttl > "$out/serve-stop-symm.log" 2>&1
echo "rc $? at $(date +%T)"; grep '^{' "$out/serve-stop-symm.log" | tail -1
echo "== $(date +%T) mqa"
timeout 200 python -m helix_core.bench.main --json "$out/bench-mqa.json" --shape mqa-8b --plans helix:kvp=2,tpa=1 tp:n=2 \
   --points 4x1m --hopb 1 2>&1 | quiet
echo "== $(date +%T) done"
