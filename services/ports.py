"""Local TCP ports."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (another process may still take it before we do)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
