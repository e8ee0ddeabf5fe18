"""What gRPC threads hand to the scheduler thread (its inbox), as plain values."""

from __future__ import annotations

from dataclasses import dataclass

from services.proto_gen.helix.v1 import shard_pb2


@dataclass(frozen=True)
class AdmitCommand:
    session_id: int
    admit: shard_pb2.Admit
    arrived_s: float  # time.monotonic() when the Admit reached rank 0


@dataclass(frozen=True)
class CancelCommand:
    session_id: int
    request_id: str


@dataclass(frozen=True)
class EndSessionCommand:
    """The session's stream ended: its requests have nobody to stream to; free them."""

    session_id: int


@dataclass(frozen=True)
class ShutdownCommand:
    drain: bool  # let live requests finish first (up to grace_s)
    grace_s: float  # 0: no limit
