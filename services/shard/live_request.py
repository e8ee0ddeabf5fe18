"""One request as the scheduler tracks it, from Admit to its last event."""

from __future__ import annotations

from dataclasses import dataclass

from helix_core.sampling import SamplingParams


@dataclass
class LiveRequest:
    request_id: str
    session_id: int
    seq_id: int  # the engine's sequence id
    prompt: list[int]
    sampling: SamplingParams
    max_new_tokens: int
    stop_token_ids: frozenset[int]
    return_logprobs: bool
    deadline_ns: int  # wall clock, Unix epoch ns; 0: none
    arrived_s: float  # monotonic
    reservation: list[int] | None = None  # KV pages held per KVP rank once admitted
    admitted_s: float | None = None
    prefilled: int = 0  # prompt tokens in the cache
    generated: int = 0  # tokens emitted
    in_flight: int = 0  # tokens of launched decode steps not finished yet (0 or 1)
    prefill_s: float = 0.0  # time of the prefill steps it took part in

    @property
    def key(self) -> tuple[int, str]:
        return self.session_id, self.request_id

    @property
    def prefill_done(self) -> bool:
        return self.prefilled == len(self.prompt)

    def last_token_launched(self, max_context_tokens: int) -> bool:
        """Its launched steps already bring it to max_new_tokens or the context limit: launch no more."""
        reached = self.generated + self.in_flight
        return reached >= self.max_new_tokens or len(self.prompt) + reached >= max_context_tokens

    @property
    def total_tokens(self) -> int:
        """Tokens the request may reach: what admission reserves KV for."""
        return len(self.prompt) + self.max_new_tokens
