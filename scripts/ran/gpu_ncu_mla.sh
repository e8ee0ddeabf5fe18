#!/usr/bin/env bash
# Nsight Compute on the MLA split kernel, if the GPU image has ncu: the default 128-head tile and the 64-head
# P-through-memory tile at 4 x 128K (details page into $OUT/ncu-details.txt); which profiling tools exist.
set -u
mkdir -p $OUT
{ which ncu nsys; ls -d /usr/local/cuda*/bin 2>/dev/null; ls /usr/local/cuda*/bin 2>/dev/null | head -50; ls /opt/nvidia 2>/dev/null; pip list 2>/dev/null | grep -i -E "nsight|nvtx|cupti"; python -c "import torch; print(torch.__version__)"; find / -name "ncu" -type f 2>/dev/null | head; } > $OUT/tools.txt 2>&1
NCU=$(which ncu 2>/dev/null || find / -name ncu -type f 2>/dev/null | head -1)
cat > /tmp/mla_one.py <<'PY'
import torch
from helix_core.kernels import bench_decode as bd
from helix_core.kernels import decode_attention as da
prob = bd.Problem(batch=4, context=131072, heads=128, kv_heads=1, dk=576, dv=512, mla=True, page_size=16,
                  dtype=torch.bfloat16, seed=0, device=torch.device("cuda"))
groups = da.HeadGroups(prob.kv_head_of_q)
for cfg in (da.DecodeConfig(), da.DecodeConfig(block_h=64, block_n=32, num_warps=8, num_stages=3, dv_parts=1, pages_ahead=True, probs_via_memory=True, num_splits=33)):
    for _ in range(3):
        da.paged_decode_attention(prob.q, prob.key_pages, None, prob.block_table, prob.lengths, prob.scale, groups,
                                  value_dim=512, max_length=131072, config=cfg)
torch.cuda.synchronize()
PY
if [ -n "$NCU" ]; then
  timeout 300 $NCU --kernel-name _decode_split_kernel --launch-skip 2 --launch-count 4 --set full \
    --export $OUT/mla --force-overwrite env PYTHONPATH=$PWD python /tmp/mla_one.py > $OUT/ncu.log 2>&1
  timeout 120 $NCU --import $OUT/mla.ncu-rep --page details > $OUT/ncu-details.txt 2>&1
  rm -f $OUT/mla.ncu-rep
fi
echo done >> $OUT/tools.txt
