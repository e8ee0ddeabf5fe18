"""Local TCP ports: finding a free one, and the error for one this process cannot listen on."""

from __future__ import annotations

import socket


class PortUnavailable(Exception):
    """A port this process was asked to listen on cannot be bound; the message says which, why, and the flag."""


def port_unavailable(host: str, port: int, purpose: str, flag: str, reason: str, also: str = "") -> PortUnavailable:
    return PortUnavailable(
        f"cannot listen on {host}:{port} for {purpose} ({reason}); choose another port with {flag} "
        f"(0: any free port){also}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (another process may still take it before we do)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
