"""The coordinator's Generate handler against a fake shard link and a fake gRPC context.

Covers what a live cluster reaches only by timing or by load: a call that is already over when its
handler starts (the thread pool ran it late), for which gRPC will never run an end-of-RPC callback;
and a coordinator with every Generate stream slot taken.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import grpc
import pytest

from serving_fixtures import wait_until

from services.coordinator.live_requests import LiveRequests, StreamedRequest
from services.coordinator.server import CONTROL_THREADS
from services.coordinator.servicer import CoordinatorServicer
from services.grpc_server import listen, new_server
from services.metrics import CoordinatorMetrics
from services.proto_gen.helix.v1 import coordinator_pb2 as pb
from services.proto_gen.helix.v1 import coordinator_pb2_grpc
from services.proto_gen.helix.v1 import shard_pb2


class FakeLink:
    ready = True
    address = "rank0:0"

    def __init__(self):
        self.status = shard_pb2.ShardStatus(
            model=shard_pb2.LoadedModel(
                model_name="tiny", vocab_size=128, max_position_embeddings=4096, max_context_tokens=4096
            )
        )
        self.admitted, self.cancelled = [], []

    def admit(self, admit):
        self.admitted.append(admit.request_id)

    def cancel(self, request_id):
        self.cancelled.append(request_id)


class EndedContext:
    """A context whose RPC ended before the handler ran: gRPC refuses new callbacks then."""

    def __init__(self, time_remaining_s):
        self._remaining = time_remaining_s

    def time_remaining(self):
        return self._remaining

    def add_callback(self, callback):
        return False

    def is_active(self):
        return False

    def abort(self, code, details):
        raise AssertionError(f"a call already over was aborted with {code}: {details}")


def _outcome(metrics: CoordinatorMetrics, outcome: str) -> float:
    return metrics.requests.labels(outcome=outcome)._value.get()


def _rpcs(metrics: CoordinatorMetrics, code: grpc.StatusCode) -> float:
    return metrics.rpcs.labels(grpc_method="Generate", grpc_code=code.name)._value.get()


@pytest.mark.parametrize(
    ("time_remaining_s", "outcome"),
    [(0.0, "deadline_exceeded"), (None, "client_gone"), (30.0, "client_gone")],
)
def test_a_call_over_before_its_handler_ran_is_counted_and_never_admitted(time_remaining_s, outcome):
    link, requests, metrics = (
        FakeLink(),
        LiveRequests(),
        CoordinatorMetrics.create(include_process_metrics=False),
    )
    servicer = CoordinatorServicer(link, requests, metrics)
    request = pb.GenerateRequest(prompt_token_ids=[1, 2, 3], max_new_tokens=4, request_id="late")

    events = list(servicer.Generate(request, EndedContext(time_remaining_s)))

    assert events == []
    assert link.admitted == [] and link.cancelled == []
    assert _outcome(metrics, outcome) == 1
    assert sum(_outcome(metrics, other) for other in ("deadline_exceeded", "client_gone", "error")) == 1
    assert (
        _rpcs(
            metrics,
            grpc.StatusCode.DEADLINE_EXCEEDED
            if outcome == "deadline_exceeded"
            else grpc.StatusCode.CANCELLED,
        )
        == 1
    )
    assert requests.get("late") is None  # the id is free again
    assert metrics.in_flight_requests._value.get() == 0


def test_a_call_that_ends_while_streaming_is_counted_once_by_its_callback():
    link, requests, metrics = (
        FakeLink(),
        LiveRequests(),
        CoordinatorMetrics.create(include_process_metrics=False),
    )
    servicer = CoordinatorServicer(link, requests, metrics)
    callbacks = []
    context = SimpleNamespace(
        time_remaining=lambda: 0.0,
        add_callback=lambda callback: callbacks.append(callback) or True,
        is_active=lambda: False,
        abort=lambda code, details: pytest.fail(f"aborted with {code}"),
    )
    request = pb.GenerateRequest(prompt_token_ids=[1, 2, 3], max_new_tokens=4, request_id="gone")

    events = list(servicer.Generate(request, context))
    for callback in callbacks:  # gRPC runs them once the call has ended
        callback()

    assert [event.WhichOneof("event") for event in events] == ["accepted"]
    assert link.admitted == ["gone"] and link.cancelled == ["gone"]
    assert _outcome(metrics, "deadline_exceeded") == 1 and _outcome(metrics, "client_gone") == 0
    assert _rpcs(metrics, grpc.StatusCode.DEADLINE_EXCEEDED) == 1


@pytest.fixture
def one_stream_coordinator():
    """A real gRPC server around the servicer, with room for one Generate stream."""
    link, metrics = FakeLink(), CoordinatorMetrics.create(include_process_metrics=False)
    servicer = CoordinatorServicer(link, LiveRequests(), metrics, max_streams=1)
    server = new_server(1 + CONTROL_THREADS)
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    port = listen(server, "127.0.0.1", 0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield coordinator_pb2_grpc.CoordinatorStub(channel), link, metrics
    channel.close()
    server.stop(grace=None)


def _generate(stub, request_id):
    request = pb.GenerateRequest(prompt_token_ids=[1, 2], max_new_tokens=4, request_id=request_id)
    return stub.Generate(request, timeout=30)


def test_a_stream_beyond_the_limit_is_refused_at_once_and_control_calls_still_answer(one_stream_coordinator):
    stub, link, metrics = one_stream_coordinator
    first = _generate(stub, "first")
    assert next(first).WhichOneof("event") == "accepted"  # holds the only stream slot: no tokens come

    with pytest.raises(grpc.RpcError) as refused:
        next(_generate(stub, "second"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-streams" in refused.value.details()
    assert link.admitted == ["first"]
    assert _outcome(metrics, "rejected") == 1
    # the threads kept beyond the streams answer control calls however many streams are open
    assert stub.Cancel(pb.CancelRequest(request_id="nothing-live"), timeout=10).found is False

    first.cancel()
    wait_until(lambda: link.cancelled == ["first"], 10, "the abandoned stream to be cancelled")
    # its handler gives the slot back when it sees the call gone (within one poll)
    wait_until(lambda: _accepted(stub, "third"), 10, "a freed slot to take a new stream")
    assert link.admitted == ["first", "third"]


def _accepted(stub, request_id) -> bool:
    call = _generate(stub, request_id)
    try:
        return next(call).WhichOneof("event") == "accepted"
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        return False
    finally:
        call.cancel()


class AbortingContext:
    def abort(self, code, message):
        raise RuntimeError(f"aborted {code.name}: {message}")


def test_a_deadline_seen_by_both_the_callback_and_the_shards_counts_once():
    """At a deadline the client's call ends (gRPC's end-of-call callback) while a shard reports the same deadline
    (the handler ends the stream): whichever comes first counts the request, the other counts nothing."""
    servicer = CoordinatorServicer(FakeLink(), LiveRequests(), CoordinatorMetrics.create(include_process_metrics=False))
    live = StreamedRequest("r")
    servicer._on_rpc_end(live, 0.0, 1)  # a deadline long past: the callback counts it and cancels on the shards
    with pytest.raises(RuntimeError, match="DEADLINE_EXCEEDED"):
        servicer._end(live, AbortingContext(), grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed")
    assert _outcome(servicer.metrics, "deadline_exceeded") == 1
    assert servicer.link.cancelled == ["r"]

    other = StreamedRequest("s")  # the other order: the handler first, then the callback
    with pytest.raises(RuntimeError):
        servicer._end(other, AbortingContext(), grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed")
    servicer._on_rpc_end(other, 0.0, 1)
    assert _outcome(servicer.metrics, "deadline_exceeded") == 2
    assert servicer.link.cancelled == ["r"]  # nothing left to cancel


def test_only_the_first_end_of_a_stream_claims_it_across_threads():
    for _ in range(50):
        live = StreamedRequest("r")
        claims = []
        threads = [threading.Thread(target=lambda: claims.append(live.end())) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claims) == [False] * 7 + [True] and live.ended
