"""The client SDK against a scripted fake Coordinator on loopback (test scaffolding only).

The fake's behaviour is chosen by the request id's prefix:
  "fail:<CODE>"  aborts with that gRPC status code and the message "fake <CODE>";
  "slow-..."     sends one token every SLOW_TOKEN_S and honours Cancel and client cancellation;
  "truncated-..." ends the stream after one token without a Finished event;
  anything else  sends its tokens at once.
Generated token i is (last prompt token + 1 + i); its text piece " t<id>"; its logprob -0.5 * i.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures
from itertools import pairwise

import grpc
import pytest

from services.client import (
    AlreadyExists,
    AsyncHelixClient,
    Cancelled,
    DeadlineExceeded,
    HelixClient,
    HelixError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.client.options import server_options
from services.proto_gen.helix.v1 import coordinator_pb2 as pb
from services.proto_gen.helix.v1 import coordinator_pb2_grpc

pytestmark = pytest.mark.timeout(60)

SLOW_TOKEN_S = 0.03
WAIT_S = 5.0  # bound of every wait on the fake server's side
QUEUE_TIME_NS, TTFT_NS, TOTAL_NS, PREFILL_NS = 1_000_000, 5_000_000, 9_000_000, 2_000_000


class FakeCoordinator(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(self) -> None:
        self.requests: dict[str, pb.GenerateRequest] = {}
        self.finished_ids: set[str] = set()
        self.terminated: dict[str, threading.Event] = {}  # set when the RPC ends, however it ends
        self.client_went_away: set[str] = set()
        self._cancel_events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def Generate(self, request, context):
        request_id = request.request_id
        terminated = self.terminated.setdefault(request_id, threading.Event())
        if not context.add_callback(terminated.set):
            terminated.set()  # the call ended before this handler ran: gRPC runs no callback then
        self.requests[request_id] = request
        if request_id.startswith("fail:"):
            code_name = request_id.removeprefix("fail:")
            context.abort(grpc.StatusCode[code_name], f"fake {code_name}")
        prompt_ids = list(request.prompt_token_ids) or [len(word) for word in request.prompt_text.split()]
        if not prompt_ids:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the prompt is empty")
        cancelled = threading.Event()
        with self._lock:
            self._cancel_events[request_id] = cancelled
        try:
            yield pb.GenerateEvent(
                accepted=pb.Accepted(request_id=request_id, prompt_tokens=len(prompt_ids), server_time_ns=1)
            )
            yield from self._tokens_then_finished(request, prompt_ids, cancelled, context)
        finally:
            with self._lock:
                del self._cancel_events[request_id]

    def _tokens_then_finished(self, request, prompt_ids, cancelled, context):
        request_id = request.request_id
        slow = request_id.startswith("slow-")
        reason = pb.FINISH_REASON_LENGTH
        generated = 0
        for index in range(request.max_new_tokens):
            if slow and cancelled.wait(SLOW_TOKEN_S):
                reason = pb.FINISH_REASON_CANCELLED
                break
            if not context.is_active():
                self.client_went_away.add(request_id)
                return
            token_id = prompt_ids[-1] + 1 + index
            logprob = -0.5 * index if request.return_logprobs else 0.0
            yield pb.GenerateEvent(
                token=pb.Token(
                    token_id=token_id,
                    logprob=logprob,
                    text=f" t{token_id}",
                    index=index,
                    server_time_ns=index,
                )
            )
            generated += 1
            if request_id.startswith("truncated-"):
                return
            if token_id in request.stop_token_ids:
                reason = pb.FINISH_REASON_STOP_TOKEN
                break
        self.finished_ids.add(request_id)
        yield pb.GenerateEvent(
            finished=pb.Finished(
                reason=reason,
                prompt_tokens=len(prompt_ids),
                generated_tokens=generated,
                queue_time_ns=QUEUE_TIME_NS,
                time_to_first_token_ns=TTFT_NS,
                total_time_ns=TOTAL_NS,
                prefill_time_ns=PREFILL_NS,
            )
        )

    def Cancel(self, request, context):
        with self._lock:
            cancelled = self._cancel_events.get(request.request_id)
        if cancelled is not None:
            cancelled.set()
        return pb.CancelResponse(found=cancelled is not None)

    def GetInfo(self, request, context):
        return pb.ClusterInfo(
            model_type="llama",
            model_name="tiny-random",
            vocab_size=128_256,
            max_context_tokens=1 << 20,
            eos_token_ids=[128_001, 128_009],
            plan=pb.ParallelPlan(
                spec="helix:kvp=4,tpa=2",
                kind="helix",
                world_size=8,
                kvp_size=4,
                tpa_size=2,
                head_slices=1,
                ep_size=1,
                ffn_tp_size=8,
            ),
            kv_capacity_tokens_per_kvp_rank=[262_144] * 4,
        )


@pytest.fixture(scope="module")
def fake():
    servicer = FakeCoordinator()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=server_options())
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.target = f"127.0.0.1:{port}"
    yield servicer
    server.stop(grace=None).wait(WAIT_S)


@pytest.fixture(scope="module")
def client(fake):
    with HelixClient(fake.target) as helix_client:
        yield helix_client


def _unused_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_importing_the_sdk_does_not_import_torch():
    subprocess.run(
        [sys.executable, "-c", "import services.client, sys; assert 'torch' not in sys.modules"],
        check=True,
        timeout=60,
    )


def test_generate_assembles_tokens_logprobs_text_and_timings(client):
    result = client.generate([1, 2, 3], 5)

    assert result.token_ids == [4, 5, 6, 7, 8]
    assert result.logprobs == [0.0, -0.5, -1.0, -1.5, -2.0]
    assert result.text == " t4 t5 t6 t7 t8"
    assert result.finish_reason == "length"
    assert (result.prompt_tokens, result.generated_tokens) == (3, 5)
    assert len(result.token_times_s) == 5 and result.token_times_s == sorted(result.token_times_s)
    assert result.ttft_s == result.token_times_s[0] > 0
    assert result.ttl_s == pytest.approx([b - a for a, b in pairwise(result.token_times_s)])
    assert result.total_s >= result.token_times_s[-1]
    assert result.server.queue_time_s == pytest.approx(QUEUE_TIME_NS / 1e9)
    assert result.server.time_to_first_token_s == pytest.approx(TTFT_NS / 1e9)
    assert result.server.total_time_s == pytest.approx(TOTAL_NS / 1e9)
    assert result.server.prefill_time_s == pytest.approx(PREFILL_NS / 1e9)


def test_generate_sends_every_parameter(client, fake):
    result = client.generate(
        [5, 6], 4, temperature=0.7, top_p=0.9, top_k=40, seed=123, stop_token_ids=[99], return_logprobs=False
    )

    assert re.fullmatch(r"[0-9a-f]{32}", result.request_id)  # the SDK picked it, so it is known early
    sent = fake.requests[result.request_id]
    assert list(sent.prompt_token_ids) == [5, 6] and sent.prompt_text == ""
    assert sent.sampling.temperature == pytest.approx(0.7) and sent.sampling.top_p == pytest.approx(0.9)
    assert sent.sampling.top_k == 40 and sent.sampling.HasField("seed") and sent.sampling.seed == 123
    assert (sent.max_new_tokens, list(sent.stop_token_ids), sent.return_logprobs) == (4, [99], False)
    assert result.logprobs is None
    assert client.generate([5], 1).request_id != result.request_id


def test_unset_seed_stays_unset_and_request_id_can_be_chosen(client, fake):
    client.generate([5], 1, request_id="mine-1")
    assert not fake.requests["mine-1"].sampling.HasField("seed")


def test_stop_token_ends_generation_and_is_included(client):
    result = client.generate([10], 8, stop_token_ids=[13])
    assert result.token_ids == [11, 12, 13]
    assert result.finish_reason == "stop_token"


def test_text_prompt(client, fake):
    result = client.generate(None, 2, prompt_text="hello world!", request_id="text-1")
    assert fake.requests["text-1"].prompt_text == "hello world!"
    assert result.prompt_tokens == 2
    assert result.text == " t7 t8"


def test_multi_million_token_prompt_fits_the_message_limits(client):
    # ~6 MB of packed varints: more than gRPC's 4 MiB default receive limit.
    prompt = [100_000 + i % 28_000 for i in range(2_000_000)]
    result = client.generate(prompt, 1)
    assert result.prompt_tokens == len(prompt)


def test_stream_yields_tokens_as_they_arrive(client, fake):
    with client.stream([1], 4, request_id="slow-stream-1") as token_stream:
        first = next(token_stream)
        assert "slow-stream-1" not in fake.finished_ids  # the server is still generating
        rest = list(token_stream)

    assert [first.token_id] + [event.token_id for event in rest] == [2, 3, 4, 5]
    assert [event.index for event in [first, *rest]] == [0, 1, 2, 3]
    assert first.logprob == 0.0 and first.text == " t2"
    assert all(gap > SLOW_TOKEN_S / 2 for gap in token_stream.result.ttl_s)
    assert token_stream.result.finish_reason == "length"


def test_result_is_only_available_at_the_end(client):
    with client.stream([1], 3, request_id="slow-early-1") as token_stream:
        with pytest.raises(RuntimeError, match="not ended"):
            _ = token_stream.result
        list(token_stream)
    assert token_stream.done and token_stream.result.generated_tokens == 3


@pytest.mark.parametrize(
    "code, error_class",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyExists),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhausted),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.CANCELLED, Cancelled),
        (grpc.StatusCode.INTERNAL, HelixError),
    ],
)
def test_server_errors_raise_typed_exceptions_with_code_and_message(client, code, error_class):
    with pytest.raises(HelixError) as raised:
        client.generate([1], 4, request_id=f"fail:{code.name}")

    assert type(raised.value) is error_class
    assert raised.value.code is code
    assert raised.value.message == f"fake {code.name}"
    assert code.name in str(raised.value)


def test_invalid_argument_is_also_a_value_error(client):
    with pytest.raises(ValueError, match="the prompt is empty"):
        client.generate([], 4)


def test_bad_arguments_fail_before_any_call():
    with HelixClient(f"127.0.0.1:{_unused_local_port()}") as unreachable:
        with pytest.raises(InvalidArgument, match="exactly one of"):
            unreachable.generate(None, 4)
        with pytest.raises(InvalidArgument, match="exactly one of"):
            unreachable.generate([1], 4, prompt_text="both")
        with pytest.raises(InvalidArgument, match="cannot encode"):
            unreachable.generate([-1], 4)


def test_unreachable_server_raises_unavailable():
    with HelixClient(f"127.0.0.1:{_unused_local_port()}") as unreachable:
        with pytest.raises(Unavailable) as raised:
            unreachable.generate([1], 4, timeout_s=WAIT_S)
        assert raised.value.code is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(Unavailable):
            unreachable.info(timeout_s=WAIT_S)
        with pytest.raises(Unavailable):
            unreachable.wait_ready(timeout_s=0.2)


def test_deadline_stops_the_request_on_both_sides(client, fake):
    started = time.perf_counter()
    with pytest.raises(DeadlineExceeded) as raised:
        client.generate([1], 100, request_id="slow-deadline-1", timeout_s=0.2)

    assert time.perf_counter() - started < 2.0
    assert raised.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert fake.terminated["slow-deadline-1"].wait(WAIT_S)


def test_client_default_timeout_applies_to_every_call(fake):
    with HelixClient(fake.target, timeout_s=0.2) as impatient:
        with pytest.raises(DeadlineExceeded):
            impatient.generate([1], 100, request_id="slow-deadline-2")
        assert impatient.info().model_type == "llama"


def test_cancel_by_request_id_finishes_the_stream_as_cancelled(client):
    with client.stream([1], 100, request_id="slow-cancel-1") as token_stream:
        next(token_stream)
        assert client.cancel("slow-cancel-1") is True
        remaining = list(token_stream)

    result = token_stream.result
    assert result.finish_reason == "cancelled"
    assert result.generated_tokens == 1 + len(remaining) < 100
    assert result.server is not None  # the server sent its Finished event
    assert client.cancel("slow-cancel-1") is False  # no longer live
    assert client.cancel("never-existed") is False


def test_local_cancel_ends_iteration_and_the_server_call(client, fake):
    token_stream = client.stream([1], 100, request_id="slow-local-1")
    next(token_stream)
    token_stream.cancel()
    list(token_stream)  # ends quietly

    assert token_stream.result.finish_reason == "cancelled"
    assert token_stream.result.server is None
    assert fake.terminated["slow-local-1"].wait(WAIT_S)


def test_leaving_the_with_block_early_cancels_the_request(client, fake):
    with client.stream([1], 100, request_id="slow-break-1") as token_stream:
        for _ in token_stream:
            break
    assert fake.terminated["slow-break-1"].wait(WAIT_S)
    assert "slow-break-1" not in fake.finished_ids


def test_stream_without_finished_event_is_an_error(client):
    with pytest.raises(HelixError, match="without a Finished event") as raised:
        client.generate([1], 4, request_id="truncated-1")
    assert raised.value.code is grpc.StatusCode.INTERNAL


def test_info(client):
    info = client.info()
    assert (info.model_type, info.vocab_size) == ("llama", 128_256)
    assert list(info.eos_token_ids) == [128_001, 128_009]
    assert info.plan.kvp_size * info.plan.tpa_size == info.plan.world_size == 8
    assert list(info.kv_capacity_tokens_per_kvp_rank) == [262_144] * 4


class LoadingCoordinator(FakeCoordinator):
    """GetInfo fails with `code` for the first `failures` calls (UNAVAILABLE: the shards are still loading), then
    answers as the fake does."""

    def __init__(self, failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        super().__init__()
        self.failures, self.code, self.calls = failures, code, 0

    def GetInfo(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(self.code, f"fake not ready ({self.calls})")
        return super().GetInfo(request, context)


@pytest.fixture
def serve_fake():
    """Starts a given fake servicer on a free port; returns its target."""
    servers = []

    def start(servicer) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=server_options())
        coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(grace=None).wait(WAIT_S)


def test_wait_ready_waits_out_a_loading_shard_group_and_returns_its_info(serve_fake):
    loading = LoadingCoordinator(failures=3)
    with HelixClient(serve_fake(loading)) as client:
        info = client.wait_ready(timeout_s=WAIT_S)
    assert info.model_type == "llama" and info.plan.world_size == 8
    assert loading.calls == 4  # three UNAVAILABLE answers, then the info


def test_wait_ready_gives_up_with_the_last_reason_and_stops_at_other_errors(serve_fake):
    never = LoadingCoordinator(failures=10**9)
    with HelixClient(serve_fake(never)) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=r"not ready within 0.5 s \(last: UNAVAILABLE: fake not ready \(\d+\)\)"):
            client.wait_ready(timeout_s=0.5)
        assert 0.5 <= time.monotonic() - started < 3.0
        assert never.calls >= 2  # it polled, not one call for the whole wait
    wrong = LoadingCoordinator(failures=1, code=grpc.StatusCode.UNIMPLEMENTED)
    with HelixClient(serve_fake(wrong)) as client:
        with pytest.raises(HelixError) as raised:
            client.wait_ready(timeout_s=WAIT_S)
    assert raised.value.code is grpc.StatusCode.UNIMPLEMENTED and wrong.calls == 1


def test_async_wait_ready_waits_out_a_loading_shard_group(serve_fake):
    loading = LoadingCoordinator(failures=2)
    target = serve_fake(loading)

    async def scenario():
        async with AsyncHelixClient(target) as client:
            return await client.wait_ready(WAIT_S)

    assert _run_async(scenario()).model_type == "llama" and loading.calls == 3


def _run_async(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


def test_async_client_generate_stream_info(fake):
    async def scenario():
        async with AsyncHelixClient(fake.target) as client:
            await client.wait_ready(WAIT_S)
            result = await client.generate([1, 2, 3], 3, stop_token_ids=[5])
            assert (result.token_ids, result.finish_reason) == ([4, 5], "stop_token")
            assert result.logprobs == [0.0, -0.5] and len(result.ttl_s) == 1

            async with client.stream([1], 3, request_id="slow-async-stream") as token_stream:
                first = await token_stream.__anext__()
                assert "slow-async-stream" not in fake.finished_ids
                rest = [event async for event in token_stream]
            assert [first.token_id] + [event.token_id for event in rest] == [2, 3, 4]
            assert token_stream.result.generated_tokens == 3

            info = await client.info()
            assert info.model_name == "tiny-random"

    _run_async(scenario())


def test_async_client_errors_and_deadline(fake):
    async def scenario():
        async with AsyncHelixClient(fake.target) as client:
            with pytest.raises(ResourceExhausted) as raised:
                await client.generate([1], 4, request_id="fail:RESOURCE_EXHAUSTED")
            assert raised.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert raised.value.message == "fake RESOURCE_EXHAUSTED"

            with pytest.raises(DeadlineExceeded):
                await client.generate([1], 100, request_id="slow-async-deadline", timeout_s=0.2)

    _run_async(scenario())
    assert fake.terminated["slow-async-deadline"].wait(WAIT_S)


def test_async_client_cancel(fake):
    async def scenario():
        async with AsyncHelixClient(fake.target) as client:
            async with client.stream([1], 100, request_id="slow-async-cancel") as token_stream:
                await token_stream.__anext__()
                assert await client.cancel("slow-async-cancel") is True
                async for _ in token_stream:
                    pass
            assert token_stream.result.finish_reason == "cancelled"
            assert token_stream.result.server is not None

            local = client.stream([1], 100, request_id="slow-async-local")
            await local.__anext__()
            local.cancel()
            assert [event async for event in local] == []
            assert local.result.finish_reason == "cancelled" and local.result.server is None

    _run_async(scenario())
    assert fake.terminated["slow-async-local"].wait(WAIT_S)
