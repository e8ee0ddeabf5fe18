"""`helix bench --merge-in-projection` / `--l2-prefetch-mib` / `--o-projection`: the flags reach the engine of
every rank, and the row says whether the o projection merged the KVP partials, whether projections prefetched
(CPU ranks, the one-row kernel under Triton's interpreter) and whether each rank projected every head; and what
the row counts as exposed communication."""
import json
import os
import subprocess
import sys

import pytest
from triton_interpreter import interpret_in_spawned_ranks


@pytest.mark.parametrize("choice", ["auto", "off"])
def test_row_reports_the_merge_in_the_projection_as_asked(tmp_path, choice):
    interpret_in_spawned_ranks()  # TRITON_INTERPRET=1 goes in the subprocess's environment below
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "helix_core.bench.main", "--device", "cpu", "--shape", "tiny-llama",
                    "--plans", "helix:kvp=2,tpa=1", "tp:n=2", "--points", "1x200", "--kv-pages", "16",
                    "--steps", "2", "--warmup", "1", "--graphs", "off", "--hopb", "1", "--dtype", "fp32",
                    "--small-linear", "on", "--merge-in-projection", choice, "--l2-prefetch-mib", "16",
                    "--json", str(out)],
                   check=True, timeout=300, capture_output=True, env={**os.environ, "TRITON_INTERPRET": "1"})
    rows = {row["plan"]: row for row in json.loads(out.read_text())}
    assert rows["helix:kvp=2,tpa=1"]["merge_in_projection"] is (choice == "auto")
    assert rows["tp:n=2"]["merge_in_projection"] is False  # no KVP partials to merge
    assert all(row["small_linear"] and row["attention_verified"] for row in rows.values())
    assert all(row["l2_prefetch_mib"] == 0.0 for row in rows.values())  # asked for, but a CPU cannot prefetch
    assert all(row["page_size"] == 16 for row in rows.values())  # no --page-size: the engine's default for GQA


def test_row_reports_the_replicated_o_projection_and_its_bytes(tmp_path):
    from helix_core.bench.shapes import shape_config

    rows = {}
    for choice in ("sharded", "replicated"):
        out = tmp_path / f"{choice}.json"
        subprocess.run([sys.executable, "-m", "helix_core.bench.main", "--device", "cpu", "--shape", "tiny-llama",
                        "--plans", "helix:kvp=2,tpa=1", "tp:n=2", "--points", "1x200", "--kv-pages", "12",
                        "--page-size", "64",
                        "--steps", "2", "--warmup", "1", "--graphs", "off", "--hopb", "1", "--dtype", "fp32",
                        "--exchange", "gather", "--o-projection", choice, "--json", str(out)],
                       check=True, timeout=300, capture_output=True)
        rows[choice] = {row["plan"]: row for row in json.loads(out.read_text())}
    helix, tp = rows["replicated"]["helix:kvp=2,tpa=1"], rows["replicated"]["tp:n=2"]
    assert helix["o_projection"] == "replicated" and helix["exchange"] == "gather"
    assert tp["o_projection"] == "sharded"  # TP ranks attend only their heads
    assert rows["sharded"]["helix:kvp=2,tpa=1"]["o_projection"] == "sharded"
    # the step reads the whole o_proj on each rank: the roofline's bytes grow by the other rank's half
    cfg = shape_config("tiny-llama", None)
    o_half = cfg.num_layers * cfg.hidden_size * cfg.num_heads * cfg.head_dim * 4 // 2
    grown = helix["weight_bytes_per_gpu"] - rows["sharded"]["helix:kvp=2,tpa=1"]["weight_bytes_per_gpu"]
    assert grown == o_half, (grown, o_half)
    assert tp["weight_bytes_per_gpu"] == rows["sharded"]["tp:n=2"]["weight_bytes_per_gpu"]
    assert all(row["attention_verified"] for plans in rows.values() for row in plans.values())


def test_exposed_communication_is_what_muting_the_collectives_saves_and_nothing_on_one_rank():
    from helix_core.bench.main import exposed_communication

    assert exposed_communication(6.44e-3, 5.33e-3, 2) == pytest.approx(1.11e-3)
    assert exposed_communication(5.0e-3, 5.1e-3, 2) == 0.0  # noise the other way is not negative communication
    assert exposed_communication(6.656e-3, 6.53e-3, 1) == 0.0  # one rank: no collectives, the gap is noise
