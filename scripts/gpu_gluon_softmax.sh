#!/usr/bin/env bash
# The Gluon MLA kernel's softmax variants on one H200 (scripts/gpu_gluon_mla.py variants: checks, then times),
# the clocks under short and sustained load (nvidia-smi log beside `gpu_gluon_mla.py sustained`), Nsight
# Compute's full set on variants 0 and 1 at 4 x 128K, and the kernel's GPU tests.
set -u
LOG_NAME=gluon-softmax source scripts/gpu_env.sh
say "variants"
timeout 300 python scripts/gpu_gluon_mla.py variants 2>&1 | tail -25 | tee -a "$log"
say "sustained, with nvidia-smi every 50 ms"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active \
  --format=csv -lms 50 > "$out/smi.csv" 2>&1 &
smi=$!
timeout 150 python scripts/gpu_gluon_mla.py sustained 2>&1 | tail -6 | tee -a "$log"
kill $smi
NCU=$(which ncu 2>/dev/null || ls /usr/local/cuda/bin/ncu 2>/dev/null)
if [ -n "$NCU" ]; then
  cat > /tmp/mla_ncu.py <<'PY'
import sys
sys.path.insert(0, "scripts")
import torch
from gpu_gluon_mla import make_case
from helix_core.kernels import mla_sm90
from helix_core.kernels.decode_attention import HeadGroups
q, keys, table, lens = make_case(4, 128, [131072] * 4, 64)
groups = HeadGroups.from_group_size(128, 128)
gkv, gh = groups.tables(64, q.device)
n = mla_sm90.choose_splits(4, groups, 131072, q.device)
out = torch.empty(4, 128, 512, device="cuda", dtype=torch.bfloat16)
lse = torch.empty(4, 128, device="cuda")
for mode in (0, 1):
    for _ in range(2):
        mla_sm90.launch(q, keys, table, lens, 0.07, gkv, gh, n, out, lse, softmax=mode)
torch.cuda.synchronize()
PY
  say "ncu"
  timeout 240 $NCU --kernel-name _mla_decode_kernel --launch-skip 1 --launch-count 3 --set full \
    --export $out/mla --force-overwrite env PYTHONPATH=$PYTHONPATH python /tmp/mla_ncu.py > $out/ncu.log 2>&1
  timeout 120 $NCU --import $out/mla.ncu-rep --page details > $out/ncu-details.txt 2>&1
  rm -f $out/mla.ncu-rep
  grep -E "^  _mla|Duration|SM Frequency|Compute \(SM\) Throughput|L2 Cache Throughput|DRAM Throughput|L1/TEX Cache|Issue Slots Busy|highest-utilized" $out/ncu-details.txt | head -40 | tee -a "$log"
fi
say "gluon GPU tests"
timeout 200 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -3 | tee -a "$log"
say done
