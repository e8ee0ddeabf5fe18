"""The all-reduce latency probe's harness on the CPU (gloo): each size's sum checked against the sum worked
out here, a path this machine lacks reported as a row instead of a crash, and a path past its deadline
killed. The GPU paths themselves run in scripts/gpu_next.sh."""
from __future__ import annotations

import json
import time

import torch

from helix_core.bench import collective_probe as probe


def test_gloo_rows_sum_exactly(tmp_path):
    out = tmp_path / "rows.json"
    assert probe.main(["--paths", "gloo", "--chain", "2", "--replays", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["size"] for row in rows] == [name for name, _, _ in probe.SIZES]
    for row, (_, numel, dtype_name) in zip(rows, probe.SIZES):
        assert row["exact"] is True and row["seconds_per_all_reduce"] > 0 and "error" not in row
        assert row["bytes"] == numel * getattr(torch, dtype_name).itemsize
    # what the ranks' values sum to, worked out independently: rank r holds (i % 7) * (r + 1)
    expected = torch.tensor([(i % 7) * (1 + 2) for i in range(20)], dtype=torch.float32)
    assert torch.equal(probe._expected_sum(20, 2, torch.float32), expected)
    assert torch.equal(probe._rank_values(20, 0, torch.float32, "cpu") + probe._rank_values(20, 1, torch.float32, "cpu"),
                       expected)


def test_a_path_this_machine_lacks_is_a_row_that_says_why():
    rows = probe.run_path("nccl", world_size=2, chain=2, replays=2, deadline=60)
    assert len(rows) == 1 and rows[0]["path"] == "nccl" and "rank" in rows[0]["error"]
    assert probe.main(["--paths", "nccl", "--deadline", "60"]) == 1  # nothing timed: the probe fails


def test_a_path_past_its_deadline_is_killed():
    start = time.monotonic()
    rows = probe.run_path("gloo", world_size=2, chain=1, replays=1, deadline=0.2)  # spawning alone takes longer
    assert time.monotonic() - start < 10
    assert rows[-1]["error"].startswith("no result within")
