#!/usr/bin/env bash
# The one-row config of the small-batch linear kernel in the engine (one call on 2 H200s):
# kernel tests compiled, then llama3-8b 1 x 128K with it on and off, and TP with it on.
set -u
LOG_NAME=small-linear2 source scripts/gpu_env.sh
b() { say "helix bench $*"; timeout 100 python -m helix_core.bench.main --json "$out/bench-small-linear2.json" "$@" 2>&1 | quiet | grep -E "^\| (helix|tp)" | tee -a "$log"; }
timeout 60 python -m pytest -q -p no:cacheprovider tests/test_small_linear.py 2>&1 | tail -1 | tee -a "$log"
b --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 1x128k --hopb 1 --small-linear on
b --shape llama3-8b --plans helix:kvp=2,tpa=1 --points 1x128k --hopb 1 --small-linear off
say done
