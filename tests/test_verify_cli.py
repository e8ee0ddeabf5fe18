"""`helix verify` (the GPU exactness check) run on the CPU: it must pass a correct engine against HF
and report what it ran."""
import json

from engine_fixtures import model_dir

from helix_core.verify import main


def test_verify_at_batch_one_passes_and_reports(tmp_path):
    out = tmp_path / "verify.json"
    code = main(["--model", model_dir("llama"), "--device", "cpu", "--dtype", "float32", "--tolerance", "1e-4",
                 "--steps", "4", "--batch", "1", "--plan", "helix:kvp=2,tpa=1", "--out", str(out)])
    rows = json.loads(out.read_text())
    assert code == 0
    assert len(rows) == 1 and rows[0]["ok"] and rows[0]["batch"] == 1
    assert rows[0]["max_abs_logit_diff"] < 1e-4 and rows[0]["decisive_argmax_mismatches"] == 0


def test_verify_fails_a_tolerance_no_engine_can_meet(tmp_path):
    out = tmp_path / "verify.json"
    code = main(["--model", model_dir("llama"), "--device", "cpu", "--dtype", "bfloat16", "--tolerance", "1e-9",
                 "--steps", "2", "--batch", "1", "--plan", "tp:n=2", "--out", str(out)])
    assert code == 1 and not json.loads(out.read_text())[0]["ok"]
