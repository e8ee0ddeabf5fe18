"""The `helix` command line: `helix serve` with no arguments, Ctrl-C draining it, and the flag
errors that must stop a cluster before any process starts."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

pytest.register_assert_rewrite("serving_fixtures")
from serving_fixtures import START_TIMEOUT_S, STOP_TIMEOUT_S, child_env, hf_greedy  # noqa: E402

from services.client import HelixClient  # noqa: E402

pytest_plugins = ["serving_fixtures"]
pytestmark = pytest.mark.timeout(300)


def _helix(*args, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=child_env(),
    )


class _Lines:
    """The stdout lines of a process, read by a thread so that every wait can time out."""

    def __init__(self, proc: subprocess.Popen):
        self.seen: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self._queue.put(line) for line in proc.stdout], daemon=True).start()

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} within {timeout_s} s; saw:\n{''.join(self.seen)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_serve_with_no_arguments_serves_and_ctrl_c_drains_and_stops_everything():
    """CPU, 2 shards, a tiny random Llama made on the fly, the default ports (50051...)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
    )
    shard_pids = []
    try:
        lines = _Lines(proc)
        model_dir = lines.wait_for(r"made a tiny random Llama in (\S+)", START_TIMEOUT_S).group(1)
        assert lines.wait_for(r"plan (\S+?), 2 cpu shards", 30).group(1) == "helix:kvp=2,tpa=1"
        assert lines.wait_for(r"coordinator gRPC (\S+),", 30).group(1) == "127.0.0.1:50051"
        shard_pids = [int(lines.wait_for(rf"shard {rank} pid (\d+)", 30).group(1)) for rank in (0, 1)]
        lines.wait_for(r"helix serve: ready", START_TIMEOUT_S)

        generated = _helix("generate", "--prompt-ids", "1,2,3", "--max-new-tokens", "8",  # default target
                           "--wait-ready-s", "60")
        assert generated.returncode == 0, generated.stderr
        assert [int(t) for t in generated.stdout.splitlines()[0].split()] == hf_greedy(
            model_dir, [1, 2, 3], 8
        )[0]

        # Ctrl-C while a stream runs: it finishes (drain), then everything stops.
        outcome, streaming = {}, threading.Event()

        def stream():
            with HelixClient("127.0.0.1:50051", timeout_s=120) as client:
                tokens = client.stream([4, 5, 6], 300)
                for index, _ in enumerate(tokens):
                    if index == 10:
                        streaming.set()
                outcome["result"] = tokens.result

        reference = hf_greedy(model_dir, [4, 5, 6], 300)  # now: helix serve deletes its tiny model at exit
        runner = threading.Thread(target=stream)
        runner.start()
        assert streaming.wait(60)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
        runner.join(timeout=30)
        lines.wait_for(r"helix serve: stopped", 10)
        assert outcome["result"].finish_reason == "length" and outcome["result"].generated_tokens == 300
        assert outcome["result"].token_ids == reference[0]
        assert outcome["result"].logprobs == pytest.approx(reference[1], abs=1e-4)
        assert not [pid for pid in shard_pids if _alive(pid)], "shard processes outlived helix serve"
        assert not os.path.exists(model_dir), "the tiny model made for the run was left behind"
    finally:
        for pid in [proc.pid, *shard_pids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)


def test_serve_refuses_an_unknown_model_before_starting(tmp_path):
    missing = _helix("serve", "--model", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "config.json" in missing.stderr

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10}))
    unknown = _helix("serve", "--model", str(tmp_path))
    assert unknown.returncode == 2 and "model_type" in unknown.stderr and "gpt2" in unknown.stderr


def test_serve_refuses_a_plan_the_model_cannot_run(llama_dir):
    wrong_count = _helix("serve", "--model", str(llama_dir), "--plan", "helix", "--kvp", "2", "--tpa", "2")
    assert wrong_count.returncode == 2 and "needs 4 shards" in wrong_count.stderr
    duplicating = _helix(
        "serve", "--model", str(llama_dir), "--shards", "4", "--plan", "helix", "--kvp", "1", "--tpa", "4"
    )
    assert duplicating.returncode == 2 and "TPA=4 exceeds" in duplicating.stderr


@pytest.mark.parametrize("flag", ["--prompt-ids", "--stop-ids"])
def test_generate_refuses_token_ids_that_are_not_numbers(flag):
    prompt = [] if flag == "--prompt-ids" else ["--prompt-ids", "1,2"]
    done = _helix("generate", "--target", "127.0.0.1:9", *prompt, flag, "1,x")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"argument {flag}" in done.stderr and "'1,x' is not a comma-separated list of token ids" in done.stderr


def test_generate_can_wait_for_a_cluster_and_says_why_it_gave_up():
    with _taken_port() as port:  # something listens there, but it is no coordinator: connections fail
        done = _helix("generate", "--target", f"127.0.0.1:{port}", "--prompt-ids", "1,2", "--wait-ready-s", "0.5")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "helix generate: " in done.stderr and "not ready within 0.5 s (last: " in done.stderr
    refused = _helix("generate", "--prompt-ids", "1", "--wait-ready-s", "-1")
    assert refused.returncode == 2 and "'-1' is not a number of seconds of at least 0" in refused.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_serve_on_cuda_without_it_is_refused_before_any_shard_starts(llama_dir):
    done = _helix("serve", "--model", str(llama_dir), "--device", "cuda")
    assert done.returncode == 2 and "sees no CUDA device" in done.stderr and "shard" not in done.stdout


@pytest.mark.parametrize("flags,needle", [
    (["--plan", "helix", "--kvp", "0"], "got kvp=0"),
    (["--plan", "headslice", "--shards", "2", "--m", "0"], "got m=0"),
])
def test_serve_refuses_plan_sizes_below_one(llama_dir, flags, needle):
    done = _helix("serve", "--model", str(llama_dir), *flags)
    assert done.returncode == 2 and needle in done.stderr


def test_make_tiny_model_into_a_folder_it_cannot_make_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = _helix("make-tiny-model", "--arch", "llama", "--out", str(blocker / "model"))
    assert done.returncode == 2 and "cannot write the checkpoint there" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command,flags,needle", [
    ("serve", ["--max-batch-size", "0"], "--max-batch-size must be at least 1, got 0"),
    ("serve", ["--page-size", "0"], "--page-size must be at least 1, got 0"),
    ("serve", ["--kv-memory-fraction", "1.5"], "--kv-memory-fraction must be in (0, 1], got 1.5"),
    ("serve", ["--shard-port", "70000"], "--port (serve: --shard-port) must be a port number"),
    ("serve", ["--max-restarts", "-1"], "--max-restarts must be at least 0, got -1"),
    ("coordinator", ["--shard-address", "127.0.0.1:9", "--max-streams", "0"], "--max-streams must be at least 1"),
    ("shard", ["--plan", "tp:n=2", "--world-size", "2", "--rank", "2", "--rendezvous", "127.0.0.1:9"],
     "--rank must be in [0, --world-size), got 2"),
])
def test_flags_out_of_range_are_refused_before_any_process_starts(llama_dir, command, flags, needle):
    model = [] if command == "coordinator" else ["--model", str(llama_dir)]
    done = _helix(command, *model, *flags)
    assert done.returncode == 2 and f"helix {command}: error: {needle}" in done.stderr
    assert "pid" not in done.stdout and "Traceback" not in done.stderr


@contextlib.contextmanager
def _taken_port():
    """A loopback port another process (this one) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command,flag,purpose,named", [
    ("coordinator", "--port", "the coordinator's gRPC", "--port"),
    ("coordinator", "--metrics-port", "/metrics", "--metrics-port"),
    ("shard", "--port", "shard 0's gRPC", "--port (serve: --shard-port)"),
    ("shard", "--metrics-port", "/metrics", "--metrics-port (serve: --shard-metrics-port)"),
])
def test_a_port_in_use_is_a_one_line_error_naming_its_flag(llama_dir, command, flag, purpose, named):
    role = (
        ["--shard-address", "127.0.0.1:9"]
        if command == "coordinator"
        else ["--model", str(llama_dir), "--plan", "tp:n=1", "--world-size", "1", "--rank", "0",
              "--rendezvous", "127.0.0.1:9"]
    )
    others = ["--port", "0", "--metrics-port", "0"]
    with _taken_port() as port:
        others[others.index(flag) + 1] = str(port)
        done = _helix(command, *role, "--host", "127.0.0.1", *others)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"helix {command}: error: cannot listen on 127.0.0.1:{port} for {purpose} (" in done.stderr
    assert f"choose another port with {named} (0: any free port)" in done.stderr


def test_a_second_grpc_server_on_a_taken_port_is_refused_not_sharing_it():
    """gRPC's default SO_REUSEPORT would let a second `helix serve` on the same port bind it and take part of the
    first one's connections; Helix servers turn it off."""
    from services.grpc_server import listen, new_server
    from services.ports import PortUnavailable

    first, second = new_server(2), new_server(2)
    try:
        port = listen(first, "127.0.0.1", 0)
        first.start()
        with pytest.raises(PortUnavailable, match=f"cannot listen on 127.0.0.1:{port} for gRPC"):
            listen(second, "127.0.0.1", port)
    finally:
        first.stop(grace=None)
        second.stop(grace=None)


def test_serve_whose_shard_port_is_taken_says_so_and_exits(llama_dir):
    with _taken_port() as port:
        done = _helix("serve", "--model", str(llama_dir), "--port", "0", "--metrics-port", "0",
                      "--shard-port", "0", "--shard-metrics-port", str(port), timeout_s=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert f"cannot listen on 127.0.0.1:{port} for /metrics" in done.stderr + done.stdout
    assert "helix serve: shard rank 0 exited with code 2 while starting" in done.stdout


def test_profile_refuses_a_negative_period():
    done = _helix("profile", "--shard-address", "127.0.0.1:9", "--every", "-5")
    assert done.returncode == 2 and "argument --every: '-5' is not a whole number of at least 0" in done.stderr


def test_shard_says_which_flags_are_missing(llama_dir):
    done = _helix("shard", "--model", str(llama_dir), "--plan", "helix:kvp=2,tpa=1")
    assert done.returncode == 2
    assert "--world-size" in done.stderr and "--rendezvous" in done.stderr and "--rank" in done.stderr


def test_the_launchers_shard_command_line_runs_exactly_its_config():
    """`helix serve` and `helix shard --local-ranks` start shards through shard_argv: every field
    must survive the trip through the `helix shard` flags."""
    from services.cli import shard_config_from_argv
    from services.shard.config import ShardConfig
    from services.shard_processes import shard_argv

    config = ShardConfig(
        model_dir="/models/x",
        plan_spec="helix:kvp=4,tpa=2,ep=2",
        world_size=8,
        rank=5,
        rendezvous="shard-0.helix:29500",
        device="cpu",
        dtype="bfloat16",
        host="10.0.0.7",
        port=50066,
        metrics_port=9405,
        model_name="x-prod",
        kv_pages=1000,
        kv_memory_fraction=0.8,
        page_size=32,
        stage_size=64,
        prefill_chunk=512,
        hopb_pieces=2,
        max_batch_size=48,
        max_waiting_requests=9,
        profile_every_n_steps=100,
        threads=3,
        collective_timeout_s=7.5,
        join_timeout_s=90.0,
        drain_grace_s=12.0,
        seed=11,
    )
    argv = shard_argv(config)
    assert argv[1:4] == ["-m", "services.cli", "shard"]
    assert shard_config_from_argv(argv[4:]) == config
    no_metrics = dataclasses.replace(config, metrics_port=None)
    assert shard_config_from_argv(shard_argv(no_metrics)[4:]) == no_metrics


def test_serve_demo_streams_a_request_and_exits(llama_dir):
    """The README's first command: `helix serve --demo N` answers a real client request as soon as it
    is ready; its tokens are the checkpoint's greedy continuation (HF transformers)."""
    done = _helix("serve", "--model", str(llama_dir), "--demo", "6", "--exit-after-demo", "--port", "0",
                  "--metrics-port", "0", "--shard-port", "0", "--shard-metrics-port", "0", timeout_s=START_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    demo = lines.index(next(line for line in lines if "demo: generating 6 tokens" in line))
    tokens = [int(t) for t in lines[demo + 1].split()]
    assert tokens == hf_greedy(llama_dir, list(range(1, 9)), 6)[0]
    assert any("token-to-token latency over 5 gaps" in line for line in lines)
