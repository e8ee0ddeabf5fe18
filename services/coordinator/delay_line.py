"""A fixed latency on a stream of messages, without slowing its throughput (a testing aid).

Each message is delivered `delay_s` after it was put, in order, from one thread: the link
behaves like a longer wire, not like a slower one.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class DelayLine:
    def __init__(self, delay_s: float, deliver: Callable[[object], None], name: str = "delay-line"):
        self._delay_s = delay_s
        self._deliver = deliver
        self._pending: collections.deque = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def put(self, message) -> None:
        with self._wake:
            self._pending.append((time.monotonic() + self._delay_s, message))
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                due, message = self._pending[0]
                wait_s = due - time.monotonic()
                if wait_s > 0:
                    self._wake.wait(wait_s)
                    continue
                self._pending.popleft()
            self._deliver(message)
