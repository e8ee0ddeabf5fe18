"""`helix verify` (the GPU exactness check) run on the CPU: it must pass a correct engine against HF
and report what it ran."""
import json

import pytest
import torch
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


def test_a_malformed_plan_is_a_usage_error_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cpu", "--plan", "helix:kvp=2,tpa=1", "--plan", "helix:kvp=two"])
    assert exit_.value.code == 2
    assert "argument --plan: plan 'helix:kvp=two': kvp must be a whole number" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cuda", "--plan", "tp:n=2"])
    assert exit_.value.code == 2
    assert "sees no CUDA device" in capsys.readouterr().err


def test_long_prompts_are_decoded_and_reported(tmp_path):
    """--prompt-tokens: prompts of the asked lengths (the longest the asked one, two of 13 and 26 fewer), through
    KVP = 2's staged placement, against HF on the same tokens."""
    out = tmp_path / "verify.json"
    code = main(["--model", model_dir("llama"), "--device", "cpu", "--dtype", "float32", "--tolerance", "1e-4",
                 "--steps", "3", "--batch", "2", "--prompt-tokens", "240", "--plan", "helix:kvp=2,tpa=1",
                 "--out", str(out)])
    rows = json.loads(out.read_text())
    assert code == 0 and rows[0]["ok"]
    assert rows[0]["prompt_tokens"] == [227, 240] and rows[0]["steps"] == 2 * 3


def test_prompts_longer_than_the_model_allows_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--model", model_dir("llama"), "--device", "cpu", "--steps", "16", "--prompt-tokens", "250",
              "--plan", "tp:n=2"])
    assert exit_.value.code == 2
    assert "250 + 16 steps exceed the model's max_position_embeddings 256" in capsys.readouterr().err
