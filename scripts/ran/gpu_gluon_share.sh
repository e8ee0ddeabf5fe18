#!/usr/bin/env bash
# The Gluon MLA kernel against a matmul timed as it is (bench_decode's matrix probe: as many seconds of 8192^3
# bf16 products as the kernel's timed run, after as long a warm-up), nvidia-smi's clocks and power alongside;
# then `helix bench` deepseek-mla on one GPU with the sustained matmul rate beside the burst one.
set -u
LOG_NAME=gluon-share source scripts/gpu_env.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv -lms 100 \
  > "$out/smi.csv" 2>&1 &
smi=$!
kernel_points mla128-p64 150 "4x131072 4x524288 1x131072" --mla --no-sweep --page-size 64 --iters 100
kernel_points mla64-p64 150 "4x1048576" --mla --heads 64 --no-sweep --page-size 64 --iters 100
kill $smi
say "helix bench deepseek-mla 4 layers 1 x 32K, one GPU"
bench_rows bench-mla-1gpu.json 200 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k \
  --hopb 1 --steps 100
python - "$out/bench-mla-1gpu.json" <<'PY' 2>&1 | tee -a "$log"
import json, sys
rows = json.load(open(sys.argv[1]))
rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
for r in rows:
    print({k: r.get(k) for k in ("plan", "context", "batch", "ttl_median_s", "roofline_s", "pct_roofline",
                                 "matmul_flops_measured", "matmul_flops_sustained", "pct_roofline_sustained")})
PY
say done
