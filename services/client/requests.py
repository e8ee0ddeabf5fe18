"""From the SDK's arguments to the wire: the GenerateRequest message and each call's deadline."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import grpc

from services.client.errors import InvalidArgument
from services.proto_gen.helix.v1 import coordinator_pb2

# Deadline of Cancel and GetInfo when neither the call nor the client sets one: a control call
# should never hang forever on an unreachable server. Generate has no such default.
CONTROL_TIMEOUT_S = 30.0


def effective_timeout_s(
    call_timeout_s: float | None, client_timeout_s: float | None, fallback_s: float | None
) -> float | None:
    """A call's deadline in seconds: the call's own, else the client's default, else fallback_s."""
    if call_timeout_s is not None:
        return call_timeout_s
    return client_timeout_s if client_timeout_s is not None else fallback_s


def new_request_id() -> str:
    """A fresh id, so that the caller knows it (for Cancel and logs) before the server answers."""
    return uuid.uuid4().hex


def _as_int_list(token_ids: Iterable[int]) -> list[int]:
    # numpy arrays and torch tensors convert in C through tolist(); anything else element-wise.
    tolist = getattr(token_ids, "tolist", None)
    return tolist() if callable(tolist) else list(token_ids)


def build_generate_request(
    *,
    prompt_token_ids: Sequence[int] | None,
    prompt_text: str | None,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    seed: int | None,
    stop_token_ids: Iterable[int],
    request_id: str | None,
    return_logprobs: bool,
    model: str | None = None,
) -> coordinator_pb2.GenerateRequest:
    """The wire request. Only what the wire cannot carry is checked here; the server checks values."""
    if (prompt_token_ids is None) == (prompt_text is None):
        raise InvalidArgument(
            grpc.StatusCode.INVALID_ARGUMENT, "pass exactly one of prompt_token_ids and prompt_text"
        )
    try:
        sampling = coordinator_pb2.SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
        if seed is not None:
            sampling.seed = seed
        return coordinator_pb2.GenerateRequest(
            request_id=request_id if request_id is not None else new_request_id(),
            prompt_token_ids=_as_int_list(prompt_token_ids) if prompt_token_ids is not None else (),
            prompt_text=prompt_text or "",
            sampling=sampling,
            max_new_tokens=max_new_tokens,
            stop_token_ids=_as_int_list(stop_token_ids),
            return_logprobs=return_logprobs,
            model=model or "",
        )
    except (TypeError, ValueError) as error:  # negative ids or seed, values >= 2**32, non-integers
        raise InvalidArgument(
            grpc.StatusCode.INVALID_ARGUMENT, f"cannot encode the request: {error}"
        ) from None
