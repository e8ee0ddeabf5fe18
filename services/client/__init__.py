"""Helix client SDK: talk to a Helix coordinator over gRPC.

    from services.client import HelixClient
    with HelixClient("localhost:50051") as client:
        result = client.generate([1, 15043, 29892], max_new_tokens=32)
        print(result.token_ids, result.finish_reason, result.ttft_s)
        for token in client.stream([1, 15043], max_new_tokens=32, temperature=0.7, seed=0):
            print(token.token_id, token.text)

AsyncHelixClient is the asyncio twin. Needs only grpcio and protobuf: never imports torch.
"""

from services.client.async_client import AsyncGenerationStream, AsyncHelixClient
from services.client.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    HelixError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.client.results import GenerateResult, ServerTimings, TokenEvent
from services.client.sync_client import GenerationStream, HelixClient

__all__ = [
    "AlreadyExists",
    "AsyncGenerationStream",
    "AsyncHelixClient",
    "Cancelled",
    "DeadlineExceeded",
    "GenerateResult",
    "GenerationStream",
    "HelixClient",
    "HelixError",
    "InvalidArgument",
    "NotFound",
    "ResourceExhausted",
    "ServerTimings",
    "TokenEvent",
    "Unavailable",
]
