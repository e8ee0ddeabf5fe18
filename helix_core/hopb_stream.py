"""HOP-B's second stream, for exchanges that run as kernels on the caller's stream.

An all-to-all through NCCL already runs on the process group's own stream: the next HOP-B piece's
attention overlaps it by itself. The gathered exchange (gather_exchange.py) is a symmetric-memory
all-reduce, a kernel on whatever stream launches it; on the compute stream it would wait for the
attention before it and hold up the attention after it. `ExchangeStream.run` launches it on a second
stream instead:

1. the exchange stream waits for everything the compute stream has queued (this piece's attention wrote
   the partials it sends);
2. the exchange runs there while the compute stream goes on with the next piece;
3. the returned work's `wait()` makes the compute stream wait for the exchange before it reads what
   arrived (as `dist.Work.wait()` does for NCCL), and the received tensor is marked as used by the
   compute stream, so the caching allocator does not hand its memory out again too early.

All of it is stream-ordered, with no host synchronisation, so CUDA graphs capture it (the exchange
stream forks from the capturing stream at step 1 and joins it again at step 3). One exchange stream
serves every piece, so the exchanges of a step run in order on every rank, as collectives must.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


class EventWork:
    """What `run` hands back: `wait()` makes the current stream wait for the exchange."""

    def __init__(self, event: torch.cuda.Event, device: torch.device):
        self.event, self.device = event, device

    def wait(self) -> None:
        torch.cuda.current_stream(self.device).wait_event(self.event)


class ExchangeStream:
    """A second stream of one CUDA device for the HOP-B pieces' exchanges."""

    def __init__(self, device: torch.device):
        self.device = device
        # from torch's pool of high-priority streams: the default-priority pool, which the capture streams come
        # from, hands its 32 streams out in turn, so a stream from it could be the capturing stream itself (no
        # overlap); the exchange is on the step's critical path, so it may also go first
        self.stream = torch.cuda.Stream(device=device, priority=-1)

    def run(self, exchange: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, EventWork]:
        """(received tensor, work): `exchange()` launched on this stream after all the current stream's work."""
        compute = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(compute)
        with torch.cuda.stream(self.stream):
            received = exchange()
        done = torch.cuda.Event()
        done.record(self.stream)
        received.record_stream(compute)
        return received, EventWork(done, self.device)
