# The sm_90 Gluon MLA kernel: its numbers against fp32 torch (and the Triton kernel), then its time against
# the Triton kernel at the MLA kernel points, 128 and 64 heads (scripts/gpu_gluon_mla.py).
LOG_NAME=gluon-mla source scripts/gpu_env.sh
if [ -z "$SKIP_CHECK" ]; then
say "check"
timeout 240 python scripts/gpu_gluon_mla.py check 2>&1 | tail -30 | tee -a "$log"
fi
say "bench"
timeout 300 python scripts/gpu_gluon_mla.py bench $POINTS 2>&1 | tail -30 | tee -a "$log"
say "end"
