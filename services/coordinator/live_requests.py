"""The coordinator's live requests: one event queue per Generate stream, filled from rank 0's events."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

from services.proto_gen.helix.v1 import shard_pb2


@dataclass(frozen=True)
class TokenArrived:
    token: shard_pb2.GeneratedToken
    received_ns: int  # coordinator wall clock when its TokenBatch arrived


@dataclass(frozen=True)
class Finished:
    finished: shard_pb2.RequestFinished


@dataclass(frozen=True)
class Failed:
    code: int  # grpc status code number
    message: str


@dataclass
class StreamedRequest:
    request_id: str
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    ended: bool = False  # the Generate stream has sent its last event (or failed)
    _end_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def end(self) -> bool:
        """Mark the stream ended; True only for the first caller. The handler (a last event, a shard's failure)
        and gRPC's end-of-call callback (the client's deadline or its leaving) can race at a deadline: only
        the first counts the request's outcome."""
        with self._end_lock:
            first = not self.ended
            self.ended = True
            return first


class LiveRequests:
    def __init__(self):
        self._lock = threading.Lock()
        self._requests: dict[str, StreamedRequest] = {}

    def add(self, request_id: str) -> StreamedRequest | None:
        """Registers a request; None when the id is already live."""
        with self._lock:
            if request_id in self._requests:
                return None
            request = self._requests[request_id] = StreamedRequest(request_id)
            return request

    def remove(self, request: StreamedRequest) -> None:
        with self._lock:
            if self._requests.get(request.request_id) is request:
                del self._requests[request.request_id]

    def get(self, request_id: str) -> StreamedRequest | None:
        return self._requests.get(request_id)

    def __len__(self) -> int:
        return len(self._requests)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._requests)

    def deliver(self, event: shard_pb2.ShardEvent, received_ns: int) -> None:
        kind = event.WhichOneof("event")
        if kind == "tokens":
            for token in event.tokens.tokens:
                self._put(token.request_id, TokenArrived(token, received_ns))
        elif kind == "finished":
            self._put(event.finished.request_id, Finished(event.finished))
        elif kind == "failed":
            self._put(event.failed.request_id, Failed(event.failed.code, event.failed.message))

    def fail_all(self, code: int, message: str) -> None:
        with self._lock:
            requests = list(self._requests.values())
        for request in requests:
            request.events.put(Failed(code, message))

    def _put(self, request_id: str, item) -> None:
        request = self._requests.get(request_id)
        if request is not None:  # else: cancelled and gone; its late events mean nothing
            request.events.put(item)
