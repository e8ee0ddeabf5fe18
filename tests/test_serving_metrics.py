"""/metrics of the coordinator and of each shard, scraped over HTTP from a real cluster."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

pytest.register_assert_rewrite("serving_fixtures")
from serving_fixtures import child_env, prompt_of, sample, wait_until  # noqa: E402

from services.metrics import DECODE_PHASES  # noqa: E402
from services.proto_gen.helix.v1 import shard_pb2, shard_pb2_grpc  # noqa: E402

pytest_plugins = ["serving_fixtures"]
pytestmark = pytest.mark.timeout(180)
TTL = "helix_token_to_token_latency_seconds"


def _idle(cluster) -> bool:
    return sample(cluster.coordinator_metrics(), "helix_in_flight_requests") == 0


def test_ttl_observations_match_the_tokens_and_gaps_the_client_saw(main_cluster):
    wait_until(lambda: _idle(main_cluster), 30, "no request in flight")
    before = main_cluster.coordinator_metrics()
    with main_cluster.client(timeout_s=60) as client:
        result = client.generate(prompt_of(20), 40)
    after = main_cluster.coordinator_metrics()

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta(f"{TTL}_count") == result.generated_tokens - 1 == 39
    client_gaps_s = sum(result.ttl_s)  # last token's arrival - first token's arrival
    assert delta(f"{TTL}_sum") == pytest.approx(client_gaps_s, abs=0.02 + 0.05 * client_gaps_s)
    assert delta("helix_time_to_first_token_seconds_count") == 1
    assert delta("helix_request_latency_seconds_count") == 1
    assert delta("helix_queue_time_seconds_count") == 1
    assert delta("helix_generated_tokens_total") == 40
    assert delta("helix_prompt_tokens_total") == 20
    assert delta("helix_requests_total", outcome="length") == 1
    assert delta("helix_grpc_rpcs_total", grpc_method="Generate", grpc_code="OK") == 1


def test_kv_gauges_follow_a_request_and_return_to_empty(main_cluster):
    def kv(rank):
        samples = main_cluster.shard_metrics(rank)
        return (
            sample(samples, "helix_kv_cache_used_pages", shard_rank=str(rank)),
            sample(samples, "helix_kv_cache_free_pages", shard_rank=str(rank)),
        )

    total_pages = sum(kv(0))
    with main_cluster.client(timeout_s=60) as client:
        with client.stream(prompt_of(200), 300) as stream:
            for _ in range(5):
                next(stream)
            for rank in (0, 1):
                used, free = kv(rank)
                assert used > 0 and used + free == total_pages, f"shard {rank}: {used} used, {free} free"
            assert sample(main_cluster.shard_metrics(0), "helix_running_requests", shard_rank="0") == 1
            list(stream)
    wait_until(
        lambda: kv(0) == (0, total_pages) and kv(1) == (0, total_pages),
        10,
        "the KV gauges to return to empty",
    )
    assert sample(main_cluster.shard_metrics(0), "helix_running_requests", shard_rank="0") == 0
    assert sample(main_cluster.shard_metrics(0), "helix_waiting_requests", shard_rank="0") == 0


def _set_profiling(cluster, every_n_steps: int) -> int:
    with grpc.insecure_channel(cluster.shard(0)["address"]) as channel:
        stub = shard_pb2_grpc.ShardStub(channel)
        request = shard_pb2.SetProfilingRequest(every_n_steps=every_n_steps)
        return stub.SetProfiling(request, timeout=10).previous_every_n_steps


def test_profiling_is_turned_on_and_off_from_the_command_line(main_cluster):
    def helix_profile(every):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "profile",
                "--shard-address",
                main_cluster.shard(0)["address"],
                "--every",
                str(every),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(),
        )

    on = helix_profile(8)
    assert on.returncode == 0 and "one decode step in 8 (was off)" in on.stdout, on.stderr
    off = helix_profile(0)
    assert off.returncode == 0 and "off (was one decode step in 8)" in off.stdout
    follower = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "profile",
            "--shard-address",
            main_cluster.shard(1)["address"],
            "--every",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert follower.returncode == 2 and "only rank 0" in follower.stderr


def test_sampled_phase_profiling_times_the_same_steps_on_every_shard(main_cluster):
    def phase_counts():
        counts = {}
        for rank in (0, 1):
            samples = main_cluster.shard_metrics(rank)
            counts[rank] = {
                phase: sample(samples, "helix_decode_phase_seconds_count", shard_rank=str(rank), phase=phase)
                for phase in DECODE_PHASES
            }
            counts[rank]["steps"] = sample(samples, "helix_decode_steps_total", shard_rank=str(rank))
        return counts

    wait_until(lambda: _idle(main_cluster), 30, "no request in flight")
    assert _set_profiling(main_cluster, 1) == 0
    before = phase_counts()
    with main_cluster.client(timeout_s=60) as client:
        client.generate(prompt_of(10), 20)  # 19 decode steps after the prefill
    assert _set_profiling(main_cluster, 0) == 1
    profiled = phase_counts()
    for rank in (0, 1):
        steps = profiled[rank]["steps"] - before[rank]["steps"]
        assert steps == 19, f"shard {rank} counted {steps} decode steps"
        for phase in DECODE_PHASES:  # attention, all_to_all, all_reduce, ffn, sampling: each step timed
            assert profiled[rank][phase] - before[rank][phase] == steps, (rank, phase)

    with main_cluster.client(timeout_s=60) as client:
        client.generate(prompt_of(10), 20)
    unprofiled = phase_counts()
    for rank in (0, 1):
        assert unprofiled[rank]["steps"] - profiled[rank]["steps"] == 19
        assert all(unprofiled[rank][phase] == profiled[rank][phase] for phase in DECODE_PHASES)


def test_one_step_in_n_is_profiled(main_cluster):
    wait_until(lambda: _idle(main_cluster), 30, "no request in flight")

    def sampling_count():
        return sample(
            main_cluster.shard_metrics(1),
            "helix_decode_phase_seconds_count",
            shard_rank="1",
            phase="sampling",
        )

    before = sampling_count()
    _set_profiling(main_cluster, 4)
    try:
        with main_cluster.client(timeout_s=60) as client:
            client.generate(prompt_of(10), 41)  # 40 decode steps: 10 of them profiled
    finally:
        _set_profiling(main_cluster, 0)
    assert sampling_count() - before == 10
