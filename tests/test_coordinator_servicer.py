"""The coordinator's Generate handler against a fake shard link and a fake gRPC context.

Covers what a live cluster reaches only by timing: a call that is already over when its handler
starts (the thread pool ran it late), for which gRPC will never run an end-of-RPC callback.
"""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest

from services.coordinator.live_requests import LiveRequests
from services.coordinator.servicer import CoordinatorServicer
from services.metrics import CoordinatorMetrics
from services.proto_gen.helix.v1 import coordinator_pb2 as pb
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
