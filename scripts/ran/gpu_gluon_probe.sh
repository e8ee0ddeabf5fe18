# The Gluon MLA kernel with parts of its work off (what bounds it), then its checks and the kernel points.
LOG_NAME=gluon-probe source scripts/gpu_env.sh
say "probe"
timeout 150 python scripts/gpu_gluon_mla.py probe 2>&1 | tail -12 | tee -a "$log"
timeout 150 python scripts/gpu_gluon_mla.py probe 64 4 1048576 64 2>&1 | tail -12 | tee -a "$log"
timeout 200 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -3 | tee -a "$log"
