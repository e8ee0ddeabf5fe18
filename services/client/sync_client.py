"""HelixClient: the blocking SDK client of a Helix coordinator."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc

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


class GenerationStream(StreamState):
    """The TokenEvents of one Generate call, in order, as they arrive.

    Iterate it; once exhausted, `result` holds the GenerateResult. Leaving a `with` block before
    the end (or calling cancel()) cancels the request on the server.
    """

    def __iter__(self) -> Iterator[TokenEvent]:
        return self

    def __next__(self) -> TokenEvent:
        while self._result is None:
            try:
                event = next(self._call)
            except StopIteration:
                self._end()
                break
            except grpc.RpcError as error:
                if self._ended_by_own_cancel(error.code()):
                    break
                raise error_from_rpc(error) from None
            token = self._assembler.accept(event)
            if token is not None:
                return token
        raise StopIteration

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


class HelixClient:
    """Blocking client of a Helix coordinator at `target` ("host:port").

    timeout_s is the default deadline of every call, in seconds (None: Generate has none, Cancel
    and GetInfo use CONTROL_TIMEOUT_S); each method's timeout_s overrides it. A Generate deadline
    covers the whole stream. wait_for_ready makes calls wait for the server to come up (until
    their deadline) instead of failing at once with Unavailable. Failed calls raise HelixError
    subclasses (services.client.errors).
    """

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
            grpc.secure_channel(target, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(target, options=options)
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
    ) -> GenerationStream:
        """Starts generating; returns a GenerationStream of TokenEvents.

        Give the prompt as token ids, or as text (prompt_token_ids=None, prompt_text="...") when
        the model has a tokenizer. temperature 0 is greedy; top_k 0 and top_p 1 disable those
        filters. Generation stops after max_new_tokens or at a token of stop_token_ids (pass
        info().eos_token_ids to stop at EOS). request_id defaults to a fresh uuid. model, when
        set, must name the served model (info().model_name), else the call fails InvalidArgument.
        """
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
        return GenerationStream(call, assembler)

    def generate(
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
        with self.stream(
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
            for _ in token_stream:
                pass
            return token_stream.result

    def cancel(self, request_id: str, *, timeout_s: float | None = None) -> bool:
        """Stops a live request of any client; False when no live request has this id."""
        try:
            response = self._stub.Cancel(
                coordinator_pb2.CancelRequest(request_id=request_id),
                timeout=effective_timeout_s(timeout_s, self._timeout_s, CONTROL_TIMEOUT_S),
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return response.found

    def info(self, *, timeout_s: float | None = None) -> coordinator_pb2.ClusterInfo:
        """The served model and cluster layout (a helix.v1.ClusterInfo message)."""
        try:
            return self._stub.GetInfo(
                coordinator_pb2.GetInfoRequest(),
                timeout=effective_timeout_s(timeout_s, self._timeout_s, CONTROL_TIMEOUT_S),
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def wait_ready(self, timeout_s: float) -> coordinator_pb2.ClusterInfo:
        """Blocks until the coordinator is reachable and its shard group ready to serve (it answers GetInfo);
        returns that ClusterInfo. Raises Unavailable, with the last reason, after timeout_s."""
        wait = ReadyWait(timeout_s)
        while True:
            try:
                return self._stub.GetInfo(
                    coordinator_pb2.GetInfoRequest(), timeout=wait.call_timeout_s(), wait_for_ready=True
                )
            except grpc.RpcError as error:
                time.sleep(wait.not_ready(error))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> HelixClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
