"""gRPC channel and server options shared by every Helix process.

gRPC's default 4 MiB receive limit would refuse a prompt of a million-odd tokens, and its default
keepalive policy would let a silent peer go unnoticed, or punish the pings of a client waiting out
a minutes-long prefill. The SDK's channels use channel_options(); the coordinator and shard servers
use server_options() so that the two sides agree. They live in the SDK because it is the one
module every process (client, coordinator, shard) imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# 1 GiB: ~350M prompt tokens as packed varints, well under protobuf's 2 GiB hard limit.
MAX_MESSAGE_BYTES = 1 << 30
# Clients ping an open call's connection this often to notice a dead server...
KEEPALIVE_TIME_MS = 30_000
# ...and give up on it when a ping is unanswered this long.
KEEPALIVE_TIMEOUT_MS = 10_000
# Servers accept pings this far apart even when no data flows (a long prefill sends none).
MIN_PING_INTERVAL_MS = 10_000

ChannelOptions = list[tuple[str, Any]]


def _with_overrides(defaults: ChannelOptions, overrides: Sequence[tuple[str, Any]]) -> ChannelOptions:
    merged = dict(defaults)
    merged.update(overrides)
    return list(merged.items())


def channel_options(overrides: Sequence[tuple[str, Any]] = ()) -> ChannelOptions:
    """Options of a client channel (SDK, coordinator -> shard); `overrides` win."""
    return _with_overrides(
        [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            # Ping only while a call is open: an idle client has nothing to protect.
            ("grpc.keepalive_permit_without_calls", 0),
            # Keep pinging through a prefill that sends no data for minutes (default: stop after 2).
            ("grpc.http2.max_pings_without_data", 0),
        ],
        overrides,
    )


def server_options(overrides: Sequence[tuple[str, Any]] = ()) -> ChannelOptions:
    """Options of a Helix gRPC server (coordinator, shard); `overrides` win."""
    return _with_overrides(
        [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # The server pings too, so that a vanished client's streams (a coordinator's Session)
            # are cancelled within ~40 s instead of decoding for nobody.
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
            ("grpc.http2.max_pings_without_data", 0),
            # gRPC sets SO_REUSEPORT by default: a second server on a taken port would bind it too and take part of
            # the first one's connections. Off, a taken port is an error (services/ports.py says which flag).
            ("grpc.so_reuseport", 0),
        ],
        overrides,
    )
