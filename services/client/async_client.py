"""AsyncHelixClient: the asyncio (grpc.aio) twin of HelixClient, same arguments and results.

Create it inside the event loop that uses it: a grpc.aio channel belongs to one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from services.client.assembly import ResultAssembler
from services.client.errors import error_from_rpc
from services.client.options import channel_options
from services.client.readiness import ReadyWait
from services.client.requests import (
    CONTROL_TIMEOUT_S,
    build_generate_request,
    effective_timeout_s,
)
from services.client.results import GenerateResult, TokenEvent
from services.client.stream_state import StreamState
from services.proto_gen.helix.v1 import coordinator_pb2, coordinator_pb2_grpc


class AsyncGenerationStream(StreamState):
    """The TokenEvents of one Generate call (`async for`); `result` once exhausted.

    Leaving an `async with` block before the end (or cancel()) cancels the request on the server.
    """

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self

    async def __anext__(self) -> TokenEvent:
        while self._result is None:
            try:
                event = await self._call.read()
            except asyncio.CancelledError:
                # read() of a call we cancelled ourselves raises CancelledError; any other
                # CancelledError is the caller's task being cancelled and must propagate.
                if not self._ended_by_own_cancel(None):
                    raise
                break
            except grpc.aio.AioRpcError as error:
                if self._ended_by_own_cancel(error.code()):
                    break
                raise error_from_rpc(error) from None
            if event is grpc.aio.EOF:
                self._end()
                break
            token = self._assembler.accept(event)
            if token is not None:
                return token
        raise StopAsyncIteration

    async def __aenter__(self) -> AsyncGenerationStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cancel()


class AsyncHelixClient:
    """asyncio client of a Helix coordinator; see HelixClient for the arguments and semantics."""

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        channel_options_overrides: Sequence[tuple[str, Any]] = (),
        wait_for_ready: bool = False,
    ) -> None:
        options = channel_options(channel_options_overrides)
        self._channel = (
            grpc.aio.secure_channel(target, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=options)
        )
        self._stub = coordinator_pb2_grpc.CoordinatorStub(self._channel)
        self._timeout_s = timeout_s
        self._wait_for_ready = wait_for_ready

    def stream(
        self,
        prompt_token_ids: Sequence[int] | None,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        stop_token_ids: Iterable[int] = (),
        *,
        prompt_text: str | None = None,
        request_id: str | None = None,
        return_logprobs: bool = True,
        timeout_s: float | None = None,
        model: str | None = None,
    ) -> AsyncGenerationStream:
        """Starts generating; `async for` the returned stream. See HelixClient.stream()."""
        request = build_generate_request(
            prompt_token_ids=prompt_token_ids,
            prompt_text=prompt_text,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop_token_ids=stop_token_ids,
            request_id=request_id,
            return_logprobs=return_logprobs,
            model=model,
        )
        assembler = ResultAssembler(request)
        call = self._stub.Generate(
            request,
            timeout=effective_timeout_s(timeout_s, self._timeout_s, None),
            wait_for_ready=self._wait_for_ready,
        )
        return AsyncGenerationStream(call, assembler)

    async def generate(
        self,
        prompt_token_ids: Sequence[int] | None,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        stop_token_ids: Iterable[int] = (),
        *,
        prompt_text: str | None = None,
        request_id: str | None = None,
        return_logprobs: bool = True,
        timeout_s: float | None = None,
        model: str | None = None,
    ) -> GenerateResult:
        """Generates to the end and returns the GenerateResult; arguments as in stream()."""
        async with self.stream(
            prompt_token_ids,
            max_new_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            stop_token_ids,
            prompt_text=prompt_text,
            request_id=request_id,
            return_logprobs=return_logprobs,
            timeout_s=timeout_s,
            model=model,
        ) as token_stream:
            async for _ in token_stream:
                pass
            return token_stream.result

    async def cancel(self, request_id: str, *, timeout_s: float | None = None) -> bool:
        """Stops a live request of any client; False when no live request has this id."""
        try:
            response = await self._stub.Cancel(
                coordinator_pb2.CancelRequest(request_id=request_id),
                timeout=effective_timeout_s(timeout_s, self._timeout_s, CONTROL_TIMEOUT_S),
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from None
        return response.found

    async def info(self, *, timeout_s: float | None = None) -> coordinator_pb2.ClusterInfo:
        """The served model and cluster layout (a helix.v1.ClusterInfo message)."""
        try:
            return await self._stub.GetInfo(
                coordinator_pb2.GetInfoRequest(),
                timeout=effective_timeout_s(timeout_s, self._timeout_s, CONTROL_TIMEOUT_S),
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from None

    async def wait_ready(self, timeout_s: float) -> coordinator_pb2.ClusterInfo:
        """Waits until the coordinator is reachable and its shard group ready to serve (it answers GetInfo);
        returns that ClusterInfo. Raises Unavailable, with the last reason, after timeout_s."""
        wait = ReadyWait(timeout_s)
        while True:
            try:
                return await self._stub.GetInfo(
                    coordinator_pb2.GetInfoRequest(), timeout=wait.call_timeout_s(), wait_for_ready=True
                )
            except grpc.aio.AioRpcError as error:
                await asyncio.sleep(wait.not_ready(error))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncHelixClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
