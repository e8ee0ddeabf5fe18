"""The GPU scripts the next device calls run (scripts/dry_run.py): every command they would run parses and
asks for what exists (flags, shapes, points, plans that fit the machine's GPUs, pytest selections), so a
typo costs a CPU test instead of a call of the session's 30 device minutes. The checker itself is tested
on a script of known mistakes, each of which it must report."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dry_run", ROOT / "scripts" / "dry_run.py")
dry_run = importlib.util.module_from_spec(_spec)
sys.modules["dry_run"] = dry_run  # its dataclass looks itself up there
_spec.loader.exec_module(dry_run)

# the scripts the closing note names for the next device calls, and the GPUs of the machine each is for
NEXT_CALLS = {"gpu_next.sh": 2, "gpu_next2.sh": 2, "gpu_next3.sh": 2, "gpu_bench.sh": 2, "gpu_h200_kernels.sh": 1}


HELPERS = {"gpu_env.sh"}  # sourced by the others


def test_scripts_folder_holds_the_next_calls_and_ran_holds_the_rest():
    """A GPU script in scripts/ is one the next device calls run (and so checked below); once it has run it moves
    to scripts/ran/, where the dated sections of docs/benchmarks.md name it."""
    top = {path.name for path in (ROOT / "scripts").glob("gpu_*.sh")}
    assert top - HELPERS == set(NEXT_CALLS)
    assert not top & {path.name for path in (ROOT / "scripts" / "ran").glob("*.sh")}


@pytest.mark.parametrize("script,gpus", sorted(NEXT_CALLS.items()))
def test_next_gpu_scripts_pass_the_dry_run(script, gpus):
    commands, failures = dry_run.dry_run([ROOT / "scripts" / script], gpus)
    assert failures == []
    assert commands
    assert {c.describe(): c.problems for c in commands if c.problems} == {}
    assert all(c.limit_s for c in commands if c.argv[0] not in ("-", "-c")), "every GPU command runs under `timeout`"


BAD_SCRIPT = """set -u
source scripts/gpu_env.sh
timeout 100 python -m helix_core.bench.main --shape llama3-8b --plans tp:n=2 --points 1x128k --o-projecton replicated
timeout 100 python -m helix_core.bench.main --shape llama3-8b --plans helix:kvp=4,tpa=1 --points 1x128k
timeout 100 python -m helix_core.bench.main --shape llama3-8b --plans helix:kvp=1,tpa=2 --points 1xq28k
timeout 100 python -m helix_core.bench.main --shape llama3-7b --plans tp:n=2
timeout 100 python -m helix_core.verify --device cuda --arch llama --plan headslice:n=3,m=1 \\
  --overrides '{"num_attention_heads":16,"num_key_value_heads":16}'
timeout 100 python -m helix_core.verify --device cuda --arch llama --plan helix:kvp=2,tpa=1 --overrides '{bad'
timeout -s KILL 50 python -m pytest -q tests/test_small_linear.py -k "no_such_test_anywhere"
timeout 100 python scripts/gpu_serve_check.py --gpus 3 --out x
timeout 100 python -m helix_core.kernels.bench_decode --contxt 5
timeout 100 python -m helix_core.kernels.bench_decode --context 5
python -m helix_core.no_such_tool --flag
python -c "print(1"
python - "$OUT/x.json" <<'PY'
import json, sys
print(json.load(open(sys.argv[1])))
PY
python - <<'PY'
for row in rows
PY
"""


def test_dry_run_reports_each_mistake(tmp_path):
    script = tmp_path / "bad.sh"
    script.write_text(BAD_SCRIPT)
    commands, failures = dry_run.dry_run([script], gpus=2)
    assert failures == []
    problems = [" ".join(c.problems) for c in commands]
    expected = [
        "unrecognized arguments: --o-projecton",
        "needs 4 GPUs, the call has 2",
        "'1xq28k' is not BATCHxCONTEXT",
        "unknown shape 'llama3-7b'",
        "n=3 head groups must divide the 16 query",
        "--overrides is not JSON",
        "pytest collects nothing",
        "argument --gpus: invalid choice: 3",
        "unrecognized arguments: --contxt 5",
        "",  # a good command has no problem
        "not known to scripts/dry_run.py",
        "<-c> does not compile",
        "",
        "<stdin> does not compile",
    ]
    assert len(problems) == len(expected)
    for found, wanted in zip(problems, expected):
        assert (wanted in found) if wanted else found == ""
    assert [c.limit_s for c in commands] == [100.0] * 6 + [50.0] + [100.0] * 3 + [None] * 4


def test_dry_run_reports_a_failing_script(tmp_path):
    script = tmp_path / "fails.sh"
    script.write_text("set -u\necho $UNDEFINED_VARIABLE_OF_THIS_TEST\n")  # bash says why it stops
    commands, failures = dry_run.dry_run([script], gpus=1)
    assert commands == []
    assert any("bash exited" in f for f in failures) and any("no python command" in f for f in failures)


def test_dry_run_writes_nothing_into_a_real_runs_results(tmp_path, monkeypatch):
    """gpu_env.sh puts result files under $HELIX_RESULTS (default /tmp/helix-results). A dry run started inside a
    real run (pytest in gpu_suite.sh runs this module) must not write there: it would overwrite the real files."""
    real = tmp_path / "real-results"
    real.mkdir()
    (real / "kept.log").write_text("the real run's log\n")
    monkeypatch.setenv("HELIX_RESULTS", str(real))
    script = tmp_path / "writes.sh"
    script.write_text("set -u\nsource scripts/gpu_env.sh\necho dry > \"$out/kept.log\"\n"
                      "timeout 10 python -c 'print(1)'\n")
    commands, failures = dry_run.dry_run([script], gpus=1)
    assert failures == [] and len(commands) == 1
    assert (real / "kept.log").read_text() == "the real run's log\n"
    assert sorted(p.name for p in real.iterdir()) == ["kept.log"]
