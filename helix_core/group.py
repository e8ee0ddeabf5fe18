"""Rank 0 drives the group; the other ranks follow.

Rank 0 broadcasts each engine command (name and arguments) over the group's control channel,
then every rank runs it. A command that fails validation fails identically on every rank
(validation precedes any collective), so followers log nothing and wait for the next one.
"""
from __future__ import annotations

import logging

from .engine import Engine

log = logging.getLogger(__name__)

COMMANDS = ("prefill", "decode", "decode_launch", "decode_finish", "free", "stats", "gather_stats", "agreement")
SHUTDOWN = "shutdown"
HEARTBEAT = "heartbeat"
HEARTBEAT_INTERVAL_S = 5.0  # well under comm.CONTROL_TIMEOUT_S


class GroupDriver:
    """Lives in rank 0's process; calling a command runs it on every rank of the group."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._closed = False

    def call(self, name: str, *args, **kwargs):
        if name not in COMMANDS:
            raise ValueError(f"unknown engine command {name!r}")
        if self._closed:
            raise RuntimeError("the rank group is shut down")
        self.engine.comm.broadcast_object((name, args, kwargs))
        return getattr(self.engine, name)(*args, **kwargs)

    def heartbeat(self) -> None:
        """Tell idle followers rank 0 is alive (their wait on the control channel times out)."""
        if not self._closed:
            self.engine.comm.broadcast_object((HEARTBEAT, (), {}))

    def shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self.engine.comm.broadcast_object((SHUTDOWN, (), {}))

    def __getattr__(self, name):
        if name in COMMANDS:
            return lambda *args, **kwargs: self.call(name, *args, **kwargs)
        raise AttributeError(name)


def follow(engine: Engine) -> None:
    """The loop of ranks 1..N-1: run what rank 0 broadcasts until it says shutdown."""
    while True:
        name, args, kwargs = engine.comm.broadcast_object(None)
        if name == SHUTDOWN:
            return
        if name == HEARTBEAT:
            continue
        try:
            getattr(engine, name)(*args, **kwargs)
        except Exception as error:  # rank 0 raises the same error to its caller
            log.debug("rank %d: %s failed: %s", engine.rank, name, error)
