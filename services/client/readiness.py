"""`wait_ready`'s policy, shared by the blocking and asyncio clients: poll GetInfo until the coordinator answers.

The coordinator answers GetInfo only while its shard group is READY (UNAVAILABLE while the shards load, or after it
lost them and waits for them again), so an answer means the group is serving.
"""

from __future__ import annotations

import time

import grpc

from services.client.errors import HelixError, Unavailable, error_from_rpc

POLL_S = 0.2  # between two GetInfo calls while the group is not ready
_NOT_READY_YET = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class ReadyWait:
    """One wait_ready call's deadline and the last reason the coordinator was not ready."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.last_reason = "no answer yet"

    def call_timeout_s(self) -> float:
        """A GetInfo's deadline: what is left of the wait (a little at least, so a call is made)."""
        return max(0.05, self.deadline - time.monotonic())

    def not_ready(self, error: grpc.RpcError) -> float:
        """Records why GetInfo failed; returns how long to sleep before the next one. Raises the error's
        HelixError if it is not a not-ready-yet error (e.g. UNIMPLEMENTED: not a Helix coordinator), and
        Unavailable once the wait is over."""
        if error.code() not in _NOT_READY_YET:
            raise error_from_rpc(error) from None
        self.last_reason = f"{error.code().name}: {error.details()}"
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.timed_out()
        return min(POLL_S, left)

    def timed_out(self) -> HelixError:
        return Unavailable(
            grpc.StatusCode.UNAVAILABLE,
            f"the coordinator was not ready within {self.timeout_s} s (last: {self.last_reason})",
        )
