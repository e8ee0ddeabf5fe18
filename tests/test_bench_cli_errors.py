"""`helix bench` refuses bad flags before starting any rank, and a rank that dies does not leave it waiting."""
from __future__ import annotations

import os
import time

import pytest
import torch

from helix_core.bench.main import main
from helix_core.bench.rank_worker import BenchJob, run_rank
from helix_core.bench.ranks import run_ranks

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("flags,needle", [
    (["--shape", "llama3-9b"], "argument --shape: unknown shape 'llama3-9b'"),
    (["--points", "1x128q"], "argument --points: '1x128q' is not BATCHxCONTEXT"),
    (["--points", "0x1k"], "argument --points: '0x1k' is not BATCHxCONTEXT"),
    (["--plans", "helix:kvp=two"], "argument --plans: plan 'helix:kvp=two': kvp must be a whole number"),
    (["--plans", "tp:n=0"], "argument --plans: a tp plan's sizes must be at least 1, got n=0"),
])
def test_bad_flags_are_usage_errors_naming_the_flag(flags, needle, capsys):
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cpu", *flags])
    assert exit_.value.code == 2
    assert needle in capsys.readouterr().err
    assert time.monotonic() - started < 5  # refused before any rank process was spawned


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--shape", "tiny-llama"])
    assert exit_.value.code == 2
    assert "sees no CUDA device" in capsys.readouterr().err


def _die_without_reporting(rank: int, results) -> None:
    if rank == 1:
        os._exit(3)
    time.sleep(60)  # rank 0 would wait for its peer


def test_a_rank_that_dies_without_reporting_ends_the_wait_at_once():
    started = time.monotonic()
    rows, failure = run_ranks(_die_without_reporting, (), 2, timeout_s=120)
    assert rows == []
    assert failure is not None and "rank 1 exited with code 3" in failure
    assert time.monotonic() - started < 60  # long before the 120 s deadline


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
def test_a_rank_whose_setup_fails_reports_why():
    job = BenchJob(shape="tiny-llama", layers=None, plan="helix:kvp=2,tpa=1", dtype="fp32", points=((1, 64),),
                   hopb=(1,), steps=1, warmup=1, page_size=None, graphs=False, device="cuda",
                   init_method="tcp://127.0.0.1:1")
    rows, failure = run_ranks(run_rank, (job,), 2, timeout_s=120)
    assert rows == [] and failure is not None
    assert "sees no CUDA device" in failure
