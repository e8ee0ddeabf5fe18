"""What the coordinator checks before a request reaches the shards: everything that needs no engine.

Each refusal names the field to change. INVALID_ARGUMENT: the request itself is wrong.
RESOURCE_EXHAUSTED: it is well formed but longer than this cluster can hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

from services.proto_gen.helix.v1 import coordinator_pb2


class Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ServingLimits:
    model_name: str
    vocab_size: int
    max_position_embeddings: int  # the model's own limit
    max_context_tokens: int  # the lesser of the model's limit and what KV can reserve for one sequence
    max_new_tokens: int  # the most tokens one request may ask for


def _invalid(message: str) -> Rejected:
    return Rejected(grpc.StatusCode.INVALID_ARGUMENT, message)


def check_request(
    request: coordinator_pb2.GenerateRequest, limits: ServingLimits, has_tokenizer: bool
) -> None:
    """Raise Rejected for the first problem found; checks the prompt's source, not its tokens."""
    if request.model and request.model != limits.model_name:
        raise _invalid(
            f"model: {request.model!r} is not served here; this cluster serves {limits.model_name!r}"
        )
    if request.prompt_token_ids and request.prompt_text:
        raise _invalid("prompt_token_ids and prompt_text are both set; send exactly one")
    if not request.prompt_token_ids and not request.prompt_text:
        raise _invalid("prompt_token_ids: the prompt is empty")
    if request.prompt_text and not has_tokenizer:
        raise _invalid("prompt_text: this cluster has no tokenizer for its model; send prompt_token_ids")
    if request.max_new_tokens < 1:
        raise _invalid(f"max_new_tokens must be >= 1, got {request.max_new_tokens}")
    if request.max_new_tokens > limits.max_new_tokens:
        raise _invalid(
            f"max_new_tokens {request.max_new_tokens} is over this cluster's limit of {limits.max_new_tokens}"
        )
    _check_sampling(request.sampling)
    _check_vocabulary("stop_token_ids", request.stop_token_ids, limits.vocab_size)


def check_prompt(prompt: list[int], max_new_tokens: int, limits: ServingLimits) -> None:
    """The prompt's tokens and the request's length against the vocabulary, model and KV."""
    if not prompt:
        raise _invalid("prompt_text: the text tokenizes to no tokens")
    _check_vocabulary("prompt_token_ids", prompt, limits.vocab_size)
    total = len(prompt) + max_new_tokens
    what = f"the prompt ({len(prompt)} tokens) + max_new_tokens ({max_new_tokens}) = {total} tokens"
    if total > limits.max_position_embeddings:
        raise Rejected(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{what} exceeds the model's context of {limits.max_position_embeddings} tokens "
            f"(max_position_embeddings); shorten the prompt or lower max_new_tokens",
        )
    if total > limits.max_context_tokens:
        raise Rejected(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{what} exceeds the KV capacity for one sequence, {limits.max_context_tokens} tokens "
            f"(ClusterInfo.max_context_tokens); shorten the prompt or lower max_new_tokens",
        )


def _check_sampling(sampling: coordinator_pb2.SamplingParams) -> None:
    if not math.isfinite(sampling.temperature) or sampling.temperature < 0:
        raise _invalid(f"sampling.temperature must be finite and >= 0, got {sampling.temperature}")
    top_p = sampling.top_p
    if not math.isfinite(top_p) or not 0.0 <= top_p <= 1.0:  # 0 means unset, i.e. 1.0
        raise _invalid(f"sampling.top_p must be in (0, 1] (0 = unset = 1), got {top_p}")


def _check_vocabulary(field: str, token_ids, vocab_size: int) -> None:
    if max(token_ids, default=0) < vocab_size:  # one pass in C, even for a million-token prompt
        return
    index, token = next((i, t) for i, t in enumerate(token_ids) if t >= vocab_size)
    raise _invalid(f"{field}[{index}] = {token} is outside the vocabulary [0, {vocab_size})")
