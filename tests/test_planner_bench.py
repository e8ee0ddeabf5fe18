"""The planner against our own measurements: every configuration `helix bench` recorded on 1-2 GPUs
(docs/results/bench-*.json) is predicted within 15% by the profile fitted to those files."""
from pathlib import Path

import pytest

from helix_core.planner.fit import predict
from helix_core.planner.hardware import load_bench_rows, profile_from_bench

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
BENCH_FILES = sorted(RESULTS.glob("bench-*.json"))
TOLERANCE = 0.15


def _rows():
    return [r for r in load_bench_rows(BENCH_FILES) if int(r.get("gpus") or 1) <= 2]


@pytest.mark.skipif(not BENCH_FILES, reason=f"no helix bench results yet: no {RESULTS}/bench-*.json "
                                            "(run `helix bench` on 1-2 GPUs and commit its JSON)")
def test_planner_ttl_within_15_percent_of_every_bench_measurement():
    rows = _rows()
    assert rows, f"{[p.name for p in BENCH_FILES]} hold no 1-2 GPU rows with ttl_median_s and plan"
    profile = profile_from_bench(BENCH_FILES)
    misses = []
    for row in rows:
        predicted, measured = predict(profile, row), float(row["ttl_median_s"])
        if abs(predicted / measured - 1) > TOLERANCE:
            misses.append(f"{Path(row['_file']).name}: {row.get('shape')} {row['plan']} context {row['context']} "
                          f"batch {row['batch']} {row.get('dtype')}: planner {predicted * 1e3:.3f} ms, "
                          f"measured {measured * 1e3:.3f} ms ({predicted / measured - 1:+.0%})")
    fitted = (f"profile: HBM {profile.hbm_bw / 1e12:.2f} TB/s, step {profile.step_overhead_s * 1e6:.0f} us, "
              f"layer {profile.layer_overhead_s * 1e6:.1f} us, seq x layer {profile.seq_layer_overhead_s * 1e6:.2f} us, "
              f"collective {profile.collective_latency_s * 1e6:.1f} us")
    assert not misses, fitted + "\n" + "\n".join(misses)
