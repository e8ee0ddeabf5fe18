"""What the sync and asyncio generation streams share: the call, its assembler, and the ending."""

from __future__ import annotations

from typing import Any

import grpc

from services.client.assembly import ResultAssembler
from services.client.results import GenerateResult


class StreamState:
    """One Generate call's state; subclasses add the (sync or async) iteration."""

    def __init__(self, call: Any, assembler: ResultAssembler) -> None:
        self._call = call  # a grpc streaming call (sync iterator or grpc.aio.UnaryStreamCall)
        self._assembler = assembler
        self._cancelled_locally = False
        self._result: GenerateResult | None = None

    @property
    def request_id(self) -> str:
        return self._assembler.request_id

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> GenerateResult:
        """The GenerateResult; only once the stream has been iterated to its end."""
        if self._result is None:
            raise RuntimeError("the stream has not ended yet: iterate it to the end first")
        return self._result

    def cancel(self) -> None:
        """Stops the request; iteration then ends and `result` has finish_reason "cancelled"."""
        if self._result is None:
            self._cancelled_locally = True
            self._call.cancel()

    def _end(self, *, cancelled_locally: bool = False) -> None:
        self._result = self._assembler.result(cancelled_locally=cancelled_locally)

    def _ended_by_own_cancel(self, code: grpc.StatusCode | None) -> bool:
        """Whether a failed read is just the echo of our own cancel(); if so the stream ends."""
        if self._cancelled_locally and code in (grpc.StatusCode.CANCELLED, None):
            self._end(cancelled_locally=True)
            return True
        return False
