#!/usr/bin/env bash
# One H200: the one-row projection kernel with each weight tile loaded a tile early (LinearConfig.ahead),
# with and without PDL, against cuBLAS, on llama3-8b's projections at TP=2 and on one GPU.
set -u
LOG_NAME=gemv source scripts/gpu_env.sh
say "bench_small_linear, one row"
timeout 400 python -m helix_core.kernels.bench_small_linear --rows 1 --iters 20 --json "$out/small-linear-ahead.json" \
  2>&1 | tee -a "$log"
python - "$out/small-linear-ahead.json" <<'PY' | tee -a "$log"
import json, sys
for row in json.load(open(sys.argv[1]))["results"]:
    print(row["shape"], " | ".join(f"{c['config']} {c.get('seconds', float('nan')) * 1e6:.1f}" for c in row["configs"]
                                    if c["config"].startswith(("bn8/bk512/w4/s4/splits1", "bn8/bk256", "bn16/bk256", "bn8/bk1024", "bn16/bk512/w4/s4/splits1/ahead", "bn8/bk512/w8"))))
PY
say done
