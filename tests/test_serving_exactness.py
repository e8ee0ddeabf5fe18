"""Served greedy tokens and logprobs equal Hugging Face transformers on the same checkpoint.

helix (the main `helix serve` cluster), tp (the Kubernetes roles: `helix shard --local-ranks`
from environment variables + `helix coordinator`), and DeepSeek-V3 (MLA + MoE, with EP=2).
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

pytest.register_assert_rewrite("serving_fixtures")
from serving_fixtures import (  # noqa: E402
    START_TIMEOUT_S,
    ServeCluster,
    assert_matches_hf,
    child_env,
    prompt_of,
    scrape,
)

from services.client import HelixClient, InvalidArgument  # noqa: E402
from services.ports import free_port  # noqa: E402

pytest_plugins = ["serving_fixtures"]
pytestmark = pytest.mark.timeout(300)

PROMPTS = [[5, 17, 99, 3, 200, 42, 7], [1], prompt_of(150, salt=1)]  # the last spans 3 prefill chunks


def test_helix_plan_matches_transformers(main_cluster, llama_dir):
    with main_cluster.client(timeout_s=60) as client:
        info = client.info()
        assert info.plan.spec == "helix:kvp=2,tpa=1" and info.plan.world_size == 2
        for prompt in PROMPTS:
            result = client.generate(prompt, max_new_tokens=24)
            assert result.finish_reason == "length" and result.prompt_tokens == len(prompt)
            assert_matches_hf(result, llama_dir, prompt)


def test_seeded_sampling_is_reproducible(main_cluster):
    with main_cluster.client(timeout_s=60) as client:
        runs = [
            client.generate([3, 4, 5], 16, temperature=0.9, top_k=50, seed=seed).token_ids
            for seed in (7, 7, 8)
        ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def _consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        base = free_port()
        sockets = []
        try:
            for offset in range(count):
                sock = socket.socket()
                sock.bind(("127.0.0.1", base + offset))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no run of free ports")


@pytest.fixture(scope="module")
def tp_roles_cluster(tmp_path_factory, llama_dir):
    """tp:n=2 launched as on Kubernetes: one pod of 2 local ranks (env vars) + a coordinator."""
    workdir = tmp_path_factory.mktemp("tp-roles")
    shard_port, metrics_port, coordinator_port = (
        _consecutive_free_ports(2),
        _consecutive_free_ports(2),
        free_port(),
    )
    env = {
        **child_env(),
        "HELIX_POD_INDEX": "0",
        "HELIX_LOCAL_RANKS": "2",
        "HELIX_WORLD_SIZE": "2",
        "HELIX_RENDEZVOUS": f"127.0.0.1:{free_port()}",
    }
    logs = [open(workdir / "shards.log", "w"), open(workdir / "coordinator.log", "w")]
    shards = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "shard",
            "--model",
            str(llama_dir),
            "--plan",
            "tp:n=2",
            "--device",
            "cpu",
            "--host",
            "127.0.0.1",
            "--port",
            str(shard_port),
            "--metrics-port",
            str(metrics_port),
        ],
        env=env,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    coordinator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "coordinator",
            "--shard-address",
            f"127.0.0.1:{shard_port}",
            "--host",
            "127.0.0.1",
            "--port",
            str(coordinator_port),
            "--no-metrics",
            "--no-tokenizer",
        ],
        env=child_env(),
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )
    try:
        with HelixClient(f"127.0.0.1:{coordinator_port}") as client:
            client.wait_ready(START_TIMEOUT_S)  # the SDK's own wait: GetInfo polled until the group is ready
        yield {"target": f"127.0.0.1:{coordinator_port}", "metrics_ports": [metrics_port, metrics_port + 1]}
    finally:
        for proc in (coordinator, shards):
            proc.terminate()
        for proc in (coordinator, shards):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


def test_tp_plan_through_the_kubernetes_roles_matches_transformers(tp_roles_cluster, llama_dir):
    with HelixClient(tp_roles_cluster["target"], timeout_s=60) as client:
        info = client.info()
        assert info.plan.spec == "tp:n=2" and not info.has_tokenizer
        for prompt in PROMPTS:
            assert_matches_hf(client.generate(prompt, max_new_tokens=24), llama_dir, prompt)
        with pytest.raises(InvalidArgument, match="prompt_text"):
            client.generate(None, 4, prompt_text="w1 w2")
    # local rank j serves /metrics on --metrics-port + j, labelled with its global rank
    for rank, port in enumerate(tp_roles_cluster["metrics_ports"]):
        assert ("helix_kv_cache_free_pages", frozenset({("shard_rank", str(rank))})) in scrape(port)


@pytest.fixture(scope="module")
def deepseek_cluster(tmp_path_factory, deepseek_dir):
    cluster = ServeCluster(
        tmp_path_factory.mktemp("deepseek"),
        ["--plan", "helix", "--kvp", "2", "--tpa", "1", "--ep", "2"],
        deepseek_dir,
    )
    yield cluster
    cluster.stop()


def test_deepseek_v3_mla_moe_matches_transformers(deepseek_cluster, deepseek_dir):
    with deepseek_cluster.client(timeout_s=60) as client:
        info = client.info()
        assert info.model_type == "deepseek_v3" and info.plan.spec == "helix:kvp=2,tpa=1,ep=2"
        for prompt in PROMPTS:
            assert_matches_hf(client.generate(prompt, max_new_tokens=16), deepseek_dir, prompt)
