"""Turns the events of one Generate stream into TokenEvents and, at the end, a GenerateResult.

Shared by the sync and asyncio clients so that both measure and assemble the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise

import grpc

from services.client.errors import HelixError
from services.client.results import GenerateResult, ServerTimings, TokenEvent
from services.proto_gen.helix.v1 import coordinator_pb2

_NS_PER_S = 1e9
_CANCELLED = "cancelled"


def finish_reason_name(reason: int) -> str:
    """FINISH_REASON_STOP_TOKEN -> "stop_token"; unknown (newer) values -> "reason_<n>"."""
    try:
        return coordinator_pb2.FinishReason.Name(reason).removeprefix("FINISH_REASON_").lower()
    except ValueError:
        return f"reason_{reason}"


def _server_timings(finished: coordinator_pb2.Finished) -> ServerTimings:
    return ServerTimings(
        queue_time_s=finished.queue_time_ns / _NS_PER_S,
        time_to_first_token_s=finished.time_to_first_token_ns / _NS_PER_S,
        total_time_s=finished.total_time_ns / _NS_PER_S,
        prefill_time_s=finished.prefill_time_ns / _NS_PER_S,
    )


class ResultAssembler:
    """Feed it every GenerateEvent in order; it times arrivals from its own creation."""

    def __init__(
        self,
        request: coordinator_pb2.GenerateRequest,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._clock = clock
        self._start_s = clock()  # created just before the call is issued
        self.request_id = request.request_id
        self._return_logprobs = request.return_logprobs
        self._prompt_tokens = len(request.prompt_token_ids)
        self._tokens: list[TokenEvent] = []
        self._finished: coordinator_pb2.Finished | None = None

    def accept(self, event: coordinator_pb2.GenerateEvent) -> TokenEvent | None:
        """Records one event; returns the TokenEvent when it carried a token."""
        kind = event.WhichOneof("event")
        if kind == "accepted":
            self.request_id = event.accepted.request_id or self.request_id
            self._prompt_tokens = event.accepted.prompt_tokens
        elif kind == "token":
            return self._accept_token(event.token)
        elif kind == "finished":
            self._finished = event.finished
        # Any other kind comes from a newer server: ignoring it keeps old clients working.
        return None

    def _accept_token(self, token: coordinator_pb2.Token) -> TokenEvent:
        if token.index != len(self._tokens):
            raise HelixError(
                grpc.StatusCode.INTERNAL,
                f"request {self.request_id}: token index {token.index} arrived, expected {len(self._tokens)}",
            )
        token_event = TokenEvent(
            token_id=token.token_id,
            index=token.index,
            logprob=token.logprob if self._return_logprobs else None,
            text=token.text,
            server_time_ns=token.server_time_ns,
            arrival_s=self._clock() - self._start_s,
        )
        self._tokens.append(token_event)
        return token_event

    def result(self, *, cancelled_locally: bool = False) -> GenerateResult:
        """The assembled result once the stream has ended (or was cancelled by this client)."""
        finished = self._finished
        if finished is None and not cancelled_locally:
            raise HelixError(
                grpc.StatusCode.INTERNAL,
                f"request {self.request_id}: the server ended the stream without a Finished event",
            )
        arrivals = [token.arrival_s for token in self._tokens]
        return GenerateResult(
            request_id=self.request_id,
            token_ids=[token.token_id for token in self._tokens],
            logprobs=(
                [token.logprob for token in self._tokens if token.logprob is not None]
                if self._return_logprobs
                else None
            ),
            text="".join(token.text for token in self._tokens),
            finish_reason=finish_reason_name(finished.reason) if finished is not None else _CANCELLED,
            prompt_tokens=finished.prompt_tokens if finished is not None else self._prompt_tokens,
            ttft_s=arrivals[0] if arrivals else None,
            token_times_s=arrivals,
            ttl_s=[later - earlier for earlier, later in pairwise(arrivals)],
            total_s=self._clock() - self._start_s,
            server=_server_timings(finished) if finished is not None else None,
        )
