"""`helix bench --merge-in-projection` / `--l2-prefetch-mib`: the flags reach the engine of every rank, and
the row says whether the o projection merged the KVP partials and whether projections prefetched (CPU ranks,
the one-row kernel under Triton's interpreter)."""
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("choice", ["auto", "off"])
def test_row_reports_the_merge_in_the_projection_as_asked(tmp_path, choice):
    pytest.importorskip("triton")
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "helix_core.bench.main", "--device", "cpu", "--shape", "tiny-llama",
                    "--plans", "helix:kvp=2,tpa=1", "tp:n=2", "--points", "1x200", "--kv-pages", "12",
                    "--steps", "2", "--warmup", "1", "--graphs", "off", "--hopb", "1", "--dtype", "fp32",
                    "--small-linear", "on", "--merge-in-projection", choice, "--l2-prefetch-mib", "16",
                    "--json", str(out)],
                   check=True, timeout=300, capture_output=True, env={**os.environ, "TRITON_INTERPRET": "1"})
    rows = {row["plan"]: row for row in json.loads(out.read_text())}
    assert rows["helix:kvp=2,tpa=1"]["merge_in_projection"] is (choice == "auto")
    assert rows["tp:n=2"]["merge_in_projection"] is False  # no KVP partials to merge
    assert all(row["small_linear"] and row["attention_verified"] for row in rows.values())
    assert all(row["l2_prefetch_mib"] == 0.0 for row in rows.values())  # asked for, but a CPU cannot prefetch
