"""Typed errors of the SDK: the server's gRPC status code and message, one class per common code.

Every failed call raises a HelixError; catch a subclass to react to one cause (retry on
Unavailable, shorten the prompt on ResourceExhausted...). Codes without a subclass raise HelixError.
"""

from __future__ import annotations

import grpc


class HelixError(Exception):
    """A call failed with gRPC status `code`; `message` is the server's explanation."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(HelixError, ValueError):
    """The request is malformed (empty prompt, token id outside the vocabulary, bad sampling values)."""


class NotFound(HelixError):
    """What the call names does not exist."""


class AlreadyExists(HelixError):
    """The request id is already in use by a live request."""


class ResourceExhausted(HelixError):
    """The cluster cannot hold the request now (KV capacity, max context, full queue)."""


class Unavailable(HelixError):
    """The server cannot be reached or is not ready; retrying later may succeed."""


class DeadlineExceeded(HelixError):
    """The call's deadline (timeout_s) passed before it completed."""


class Cancelled(HelixError):
    """The call was cancelled before it completed."""


_ERROR_CLASS_BY_CODE: dict[grpc.StatusCode, type[HelixError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def error_for_status(code: grpc.StatusCode, message: str) -> HelixError:
    """The HelixError (subclass) instance for a status code."""
    return _ERROR_CLASS_BY_CODE.get(code, HelixError)(code, message)


def error_from_rpc(error: grpc.RpcError) -> HelixError:
    """Converts a failed call's grpc.RpcError (sync or grpc.aio) into a HelixError."""
    # Both grpc.Call (sync) and grpc.aio.AioRpcError expose code() and details().
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return error_for_status(code or grpc.StatusCode.UNKNOWN, details or "")
