"""What the SDK hands back: plain dataclasses, so callers never touch protobuf messages.

Client-side times are seconds on the caller's monotonic clock, measured from the moment the call
was issued; server-side times come from the coordinator's Finished event.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenEvent:
    """One generated token, as stream() yields it."""

    token_id: int
    index: int  # 0-based position among the request's generated tokens
    logprob: float | None  # None when the call asked for no logprobs
    text: str  # detokenized piece; "" when the checkpoint has no tokenizer
    server_time_ns: int  # coordinator wall clock when the token reached it, Unix epoch ns
    arrival_s: float  # client: seconds from issuing the call to receiving this token


@dataclass(frozen=True)
class ServerTimings:
    """The coordinator's view of one request, in seconds from its receipt of the request."""

    queue_time_s: float  # waiting for a batch slot and KV pages
    time_to_first_token_s: float
    total_time_s: float
    prefill_time_s: float  # shard time on the prompt; part of time_to_first_token_s


@dataclass(frozen=True)
class GenerateResult:
    """A finished (or locally cancelled) generation."""

    request_id: str
    token_ids: list[int]
    logprobs: list[float] | None  # one per token; None when the call asked for none
    text: str  # concatenated text pieces
    # "length", "stop_token", "cancelled" or "max_context" (a newer server may add reasons).
    finish_reason: str
    prompt_tokens: int
    ttft_s: float | None  # client time to first token; None when no token came
    token_times_s: list[float]  # client arrival time of each token
    ttl_s: list[float]  # token-to-token latencies: gaps between consecutive arrivals
    total_s: float  # client time from issuing the call to its end
    server: ServerTimings | None  # None when the call was cancelled on the client side

    @property
    def generated_tokens(self) -> int:
        return len(self.token_ids)
