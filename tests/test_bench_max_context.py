"""`helix bench --points 1xmax`: the longest context a KV pool holds, run end to end on CPU ranks."""
import json
import subprocess
import sys


def test_max_point_runs_the_longest_context_the_pool_holds(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "helix_core.bench.main", "--device", "cpu", "--shape", "tiny-llama",
                           "--plans", "helix:kvp=2,tpa=1", "--points", "1xmax", "2xmax", "--kv-pages", "12",
                           "--page-size", "64", "--steps", "2", "--warmup", "1", "--graphs", "off", "--hopb", "1",
                           "--dtype", "fp32", "--json", str(out)], check=True, timeout=300, capture_output=True, text=True)
    rows = json.loads(out.read_text())
    # 12 pages of 64 tokens per KVP rank = 768 tokens each; stages of 16 alternate between the 2 ranks.
    # One sequence: 1536 tokens. Two (starting on different ranks): 768 each. Less what the point decodes:
    # 1 warm-up step, 2 steps one at a time, 2 + 2 launched ones, and a margin of 8.
    assert [(row["batch"], row["context"]) for row in rows] == [(1, 1536 - 15), (2, 768 - 15)]
    assert all(row["kv_pool_pages_per_rank"] == 12 and row["page_size"] == 64 and row["attention_verified"]
               and row["gpu_name"] == "cpu" for row in rows)  # the targets count H200 rows only
    assert "shape tiny-llama (2 layers, float32) on cpu; KV: random data (no prefill)" in done.stdout
