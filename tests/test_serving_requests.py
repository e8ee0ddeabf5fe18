"""One request's life on a real cluster: bad inputs, cancellation, disconnects, deadlines, stop
tokens, text prompts, and the health / reflection services."""

from __future__ import annotations

import math
import subprocess
import sys
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

pytest.register_assert_rewrite("serving_fixtures")
from serving_fixtures import (  # noqa: E402
    MAIN_MODEL_CONTEXT,
    assert_matches_hf,
    child_env,
    hf_greedy,
    prompt_of,
    sample,
    wait_until,
)

from services.client import (  # noqa: E402
    AlreadyExists,
    DeadlineExceeded,
    HelixError,
    InvalidArgument,
    ResourceExhausted,
)
from services.proto_gen.helix.v1 import coordinator_pb2 as pb  # noqa: E402
from services.proto_gen.helix.v1 import coordinator_pb2_grpc, shard_pb2, shard_pb2_grpc  # noqa: E402

pytest_plugins = ["serving_fixtures"]
pytestmark = pytest.mark.timeout(180)
DEADLINE_TEST_S = 4.0


def _kv_empty(cluster) -> bool:
    return all(
        sample(cluster.shard_metrics(rank), "helix_kv_cache_used_pages", shard_rank=str(rank)) == 0
        and sample(cluster.shard_metrics(0), "helix_running_requests", shard_rank="0") == 0
        for rank in (0, 1)
    )


def _outcomes(cluster, outcome: str) -> float:
    return sample(cluster.coordinator_metrics(), "helix_requests_total", outcome=outcome)


@pytest.fixture(scope="module")
def limits(main_cluster):
    with main_cluster.client(timeout_s=30) as client:
        info = client.info()
    assert info.max_context_tokens < MAIN_MODEL_CONTEXT, (
        "the KV limit must be below the model's for these tests"
    )
    return info


def _bad_requests(limits):
    """(name, SDK kwargs, expected error class, words the message must contain)"""
    kv = limits.max_context_tokens
    return [
        ("empty prompt", dict(prompt_token_ids=[], max_new_tokens=4), InvalidArgument, "prompt_token_ids"),
        (
            "token outside vocab",
            dict(prompt_token_ids=[1, 256], max_new_tokens=4),
            InvalidArgument,
            "prompt_token_ids[1]",
        ),
        (
            "zero max_new_tokens",
            dict(prompt_token_ids=[1], max_new_tokens=0),
            InvalidArgument,
            "max_new_tokens",
        ),
        (
            "max_new_tokens over the limit",
            dict(prompt_token_ids=[1], max_new_tokens=kv + 1),
            InvalidArgument,
            "max_new_tokens",
        ),
        (
            "longer than the model",
            dict(prompt_token_ids=prompt_of(MAIN_MODEL_CONTEXT - kv + 10), max_new_tokens=kv - 5),
            ResourceExhausted,
            "max_position_embeddings",
        ),
        (
            "longer than the KV capacity",
            dict(prompt_token_ids=prompt_of(100), max_new_tokens=kv - 99),
            ResourceExhausted,
            "KV capacity",
        ),
        (
            "negative temperature",
            dict(prompt_token_ids=[1], max_new_tokens=4, temperature=-0.5),
            InvalidArgument,
            "temperature",
        ),
        (
            "nan temperature",
            dict(prompt_token_ids=[1], max_new_tokens=4, temperature=math.nan),
            InvalidArgument,
            "temperature",
        ),
        (
            "top_p over 1",
            dict(prompt_token_ids=[1], max_new_tokens=4, temperature=1.0, top_p=1.5),
            InvalidArgument,
            "top_p",
        ),
        (
            "negative top_p",
            dict(prompt_token_ids=[1], max_new_tokens=4, temperature=1.0, top_p=-0.2),
            InvalidArgument,
            "top_p",
        ),
        (
            "stop token outside vocab",
            dict(prompt_token_ids=[1], max_new_tokens=4, stop_token_ids=[999]),
            InvalidArgument,
            "stop_token_ids[0]",
        ),
        (
            "unknown model",
            dict(prompt_token_ids=[1], max_new_tokens=4, model="llama-70b"),
            InvalidArgument,
            "model",
        ),
    ]


def test_every_bad_input_fails_alone_while_others_are_served(main_cluster, limits, llama_dir):
    """Each bad request fails with a message naming its field; a stream running meanwhile is unharmed."""
    rejected_before = _outcomes(main_cluster, "rejected")
    with main_cluster.client(timeout_s=120) as client:
        background = {}
        runner = threading.Thread(target=lambda: background.update(result=client.generate([4, 4, 2], 300)))
        runner.start()
        cases = _bad_requests(limits)
        for name, kwargs, error_class, words in cases:
            with pytest.raises(error_class) as failure:
                client.generate(**kwargs)
            assert words in failure.value.message, f"{name}: {failure.value.message}"
        runner.join(timeout=120)
    assert_matches_hf(background["result"], llama_dir, [4, 4, 2])
    assert _outcomes(main_cluster, "rejected") - rejected_before == len(cases)


def test_both_prompt_forms_at_once_are_refused(main_cluster):
    with grpc.insecure_channel(main_cluster.target) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        request = pb.GenerateRequest(prompt_token_ids=[1, 2], prompt_text="w1 w2", max_new_tokens=2)
        with pytest.raises(grpc.RpcError) as failure:
            list(stub.Generate(request, timeout=30))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt_text" in failure.value.details()


def test_a_live_request_id_cannot_be_reused(main_cluster):
    with main_cluster.client(timeout_s=60) as client:
        with client.stream([1, 2], 200, request_id="same-id") as first:
            next(first)
            with pytest.raises(AlreadyExists, match="same-id"):
                client.generate([3], 2, request_id="same-id")
    wait_until(lambda: _kv_empty(main_cluster), 10, "the KV of the abandoned stream to be freed")


def test_cancel_ends_the_stream_and_frees_its_kv(main_cluster):
    with main_cluster.client(timeout_s=60) as client:
        stream = client.stream(prompt_of(40), 600, request_id="to-cancel")
        tokens = [next(stream) for _ in range(5)]
        assert sample(main_cluster.shard_metrics(1), "helix_kv_cache_used_pages", shard_rank="1") > 0
        assert client.cancel("to-cancel") is True
        rest = list(stream)
        assert stream.result.finish_reason == "cancelled" and stream.result.server is not None
        assert len(tokens) + len(rest) < 600
        assert client.cancel("to-cancel") is False  # no longer live
        assert client.cancel("never-existed") is False
    wait_until(lambda: _kv_empty(main_cluster), 10, "the KV of the cancelled request to be freed")


def test_a_client_that_disconnects_mid_stream_frees_its_kv(main_cluster):
    gone_before = _outcomes(main_cluster, "client_gone")
    with main_cluster.client(timeout_s=60) as client:
        with client.stream(prompt_of(40, salt=2), 600) as stream:
            for _ in range(5):
                next(stream)
        # leaving the block cancels the call: the server sees the client go away
    wait_until(lambda: _kv_empty(main_cluster), 10, "the KV of the abandoned request to be freed")
    wait_until(
        lambda: _outcomes(main_cluster, "client_gone") == gone_before + 1, 10, "client_gone to be counted"
    )


def test_a_deadline_ends_the_request_and_frees_its_kv(main_cluster):
    expired_before = _outcomes(main_cluster, "deadline_exceeded")
    with main_cluster.client() as client:
        # 900 tokens take about 12 s here; the first one shows that the coordinator's handler ran and
        # admitted the request before the deadline (a call that ends before its handler runs never reaches it)
        with client.stream(prompt_of(30), 900, timeout_s=DEADLINE_TEST_S) as stream:
            next(stream)
            with pytest.raises(DeadlineExceeded):
                list(stream)
    wait_until(lambda: _kv_empty(main_cluster), 10, "the KV of the expired request to be freed")
    wait_until(
        lambda: _outcomes(main_cluster, "deadline_exceeded") == expired_before + 1,
        10,
        "deadline_exceeded to be counted",
    )


def test_generation_stops_at_a_stop_token_and_streams_it(main_cluster, llama_dir):
    prompt = [11, 22, 33]
    reference, _ = hf_greedy(llama_dir, prompt, 30)
    stop = reference[5]
    expected = reference[: reference.index(stop) + 1]
    with main_cluster.client(timeout_s=60) as client:
        result = client.generate(prompt, 30, stop_token_ids=[stop])
    assert result.finish_reason == "stop_token" and result.token_ids == expected


def test_text_prompt_and_incremental_text(main_cluster, llama_dir):
    with main_cluster.client(timeout_s=60) as client:
        assert client.info().has_tokenizer
        result = client.generate(None, 8, prompt_text="w5 w17 w99")
    assert_matches_hf(result, llama_dir, [5, 17, 99])
    assert result.text == "".join(f" w{token}" for token in result.token_ids)


def test_generate_cli_streams_tokens_and_prints_ttl_statistics(main_cluster, llama_dir):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "generate",
            "--target",
            main_cluster.target,
            "--prompt-ids",
            "5,17,99",
            "--max-new-tokens",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert done.returncode == 0, done.stderr
    expected, _ = hf_greedy(llama_dir, [5, 17, 99], 12)
    lines = done.stdout.splitlines()
    assert lines[0].split() == [f"w{token}" for token in expected]  # the model has a tokenizer: text
    assert "12 generated, finish reason length" in done.stdout
    assert "token-to-token latency over 11 gaps" in done.stdout and "p99" in done.stdout


def test_health_and_reflection_are_served(main_cluster):
    checks = [(main_cluster.target, ("", "helix.v1.Coordinator"))]
    checks += [(main_cluster.shard(rank)["address"], ("", "helix.v1.Shard")) for rank in (0, 1)]
    for address, services in checks:
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in services:
                status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
                assert status == health_pb2.HealthCheckResponse.SERVING, (address, service)
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            answer = next(
                reflection.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
                )
            )
            names = {service.name for service in answer.list_services_response.service}
            assert services[1] in names and "grpc.health.v1.Health" in names


def test_only_rank_0_takes_sessions(main_cluster):
    with grpc.insecure_channel(main_cluster.shard(1)["address"]) as channel:
        stub = shard_pb2_grpc.ShardStub(channel)
        status = stub.Status(shard_pb2.StatusRequest(), timeout=10)
        assert status.rank == 1 and status.state == shard_pb2.SHARD_STATE_READY and status.kvp_rank == 1
        with pytest.raises(grpc.RpcError) as failure:
            list(stub.Session(iter([]), timeout=10))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_errors_are_helix_errors_with_codes(main_cluster):
    with main_cluster.client(timeout_s=30) as client:
        with pytest.raises(HelixError) as failure:
            client.generate([1], 0)
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_load_confirms_the_checkpoint_a_shard_serves(main_cluster, llama_dir, limits):
    with grpc.insecure_channel(main_cluster.shard(1)["address"]) as channel:
        stub = shard_pb2_grpc.ShardStub(channel)
        status = stub.Load(
            shard_pb2.LoadRequest(checkpoint_path=str(llama_dir), plan_spec="helix:kvp=2,tpa=1"), timeout=30
        )
        assert status.state == shard_pb2.SHARD_STATE_READY and status.model.model_type == "llama"
        assert status.model.max_context_tokens == limits.max_context_tokens
        assert status.model.plan.spec == "helix:kvp=2,tpa=1" and status.kv.pages_total == 48
        with pytest.raises(grpc.RpcError) as failure:
            stub.Load(shard_pb2.LoadRequest(checkpoint_path="/models/another"), timeout=30)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "checkpoint_path" in failure.value.details()
