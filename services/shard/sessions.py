"""Rank 0's Session streams: at most one live, each with an outbox the scheduler fills.

The scheduler thread only ever puts into an outbox (never blocks on a stream); the Session's
gRPC thread drains it. Opening a new session ends the previous one, whose stream closes ABORTED.
"""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass, field

REPLACED = "replaced"  # outbox marker: a newer Session took over
CLOSED = "closed"  # outbox marker: the scheduler stopped


@dataclass
class Session:
    session_id: int
    outbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)


class SessionHub:
    def __init__(self):
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._current: Session | None = None
        self._closed = False

    def open(self) -> Session:
        with self._lock:
            session = Session(next(self._ids))
            if self._closed:
                session.outbox.put(CLOSED)
            elif self._current is not None:
                self._current.outbox.put(REPLACED)
            self._current = session
            return session

    def forget(self, session: Session) -> None:
        with self._lock:
            if self._current is session:
                self._current = None

    def send(self, session_id: int, event) -> None:
        """Queue an event for a session; events of a session that ended are dropped."""
        current = self._current
        if current is not None and current.session_id == session_id:
            current.outbox.put(event)

    def close(self) -> None:
        """The scheduler stopped: end the live session's stream once its events are out."""
        with self._lock:
            self._closed = True
            if self._current is not None:
                self._current.outbox.put(CLOSED)
