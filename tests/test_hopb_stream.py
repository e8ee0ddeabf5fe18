"""HOP-B's exchange stream (helix_core/hopb_stream.py): the order of stream operations that makes a gathered
exchange safe beside the next piece's attention, checked on the CPU against fake streams and events that log
what they are asked. The required order: the exchange stream first waits for the compute stream (the partials
it sends were written there); the exchange is launched on the exchange stream; an event is recorded there after
it; the received tensor is marked as used by the compute stream; and only `wait()` makes the compute stream wait
for that event. On GPUs the same path runs in `helix verify` with two pieces (scripts/gpu_next.sh)."""
from __future__ import annotations

import contextlib

import pytest
import torch

from helix_core import hopb_stream


class FakeStream:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_stream(self, other):
        self.log.append(f"{self.name} waits for {other.name}")

    def wait_event(self, event):
        self.log.append(f"{self.name} waits for event {event.name}")


class FakeCuda:
    """The torch.cuda calls hopb_stream makes, logged; `current` is the stream code runs on."""

    def __init__(self):
        self.log = []
        self.compute = FakeStream("compute", self.log)
        self.current = self.compute
        self.events = 0

    def Stream(self, device=None, priority=0):  # noqa: N802 - torch.cuda's name
        self.priority = priority
        return FakeStream("exchange", self.log)

    def current_stream(self, device=None):
        return self.current

    @contextlib.contextmanager
    def stream(self, stream):
        previous, self.current = self.current, stream
        self.log.append(f"on {stream.name}")
        try:
            yield
        finally:
            self.current = previous
            self.log.append(f"back on {previous.name}")

    def Event(self):  # noqa: N802
        cuda = self
        cuda.events += 1

        class Event:
            name = f"e{cuda.events}"

            def record(self, stream):
                cuda.log.append(f"event {self.name} recorded on {stream.name}")
        return Event()


class Received:
    def __init__(self, log):
        self.log = log

    def record_stream(self, stream):
        self.log.append(f"received used by {stream.name}")


@pytest.fixture
def fake(monkeypatch):
    """torch.cuda's stream and event calls replaced by FakeCuda's for the test."""
    cuda = FakeCuda()
    for name in ("Stream", "current_stream", "stream", "Event"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    return cuda


def test_exchange_runs_beside_the_compute_stream_in_the_required_order(fake):
    side = hopb_stream.ExchangeStream(torch.device("cuda", 0))

    def exchange():
        fake.log.append(f"exchange launched on {fake.current.name}")
        return Received(fake.log)

    assert fake.priority < 0  # a high-priority stream: never one of the default-priority capture streams
    received, work = side.run(exchange)
    assert isinstance(received, Received)
    assert fake.log == [
        "exchange waits for compute",  # the piece's partials are written before they are sent
        "on exchange",
        "exchange launched on exchange",
        "back on compute",
        "event e1 recorded on exchange",
        "received used by compute",  # its memory is not handed out again while compute may read it
    ]
    assert fake.current is fake.compute  # the next piece's attention is queued on the compute stream
    fake.log.clear()
    work.wait()  # before the merge reads what arrived
    assert fake.log == ["compute waits for event e1"]


def test_each_exchange_gets_its_own_event(fake):
    """Two pieces: the merge of the first waits only for the first exchange, not for the second."""
    side = hopb_stream.ExchangeStream(torch.device("cuda", 0))
    _, first = side.run(lambda: Received(fake.log))
    _, second = side.run(lambda: Received(fake.log))
    fake.log.clear()
    first.wait()
    second.wait()
    assert fake.log == ["compute waits for event e1", "compute waits for event e2"]
