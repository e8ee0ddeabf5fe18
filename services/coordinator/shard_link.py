"""The coordinator's one connection to shard rank 0: readiness, the Session stream, event fan-out.

A thread keeps one Session open whenever rank 0 is READY. Admissions and cancellations go out on
it; TokenBatch / RequestFinished / RequestFailed come back and are fanned out to the live
requests' queues. Nothing here is on the per-token path of the decode loop, which runs on the
shards: tokens arrive asynchronously, batched per step.

When the session ends (rank 0 died or failed, or stopped answering Status for a few seconds),
every live request fails UNAVAILABLE at once and the link waits for a READY rank 0 again, as
after a restart of the group.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import grpc

from services.client.options import channel_options
from services.coordinator.delay_line import DelayLine
from services.coordinator.live_requests import LiveRequests
from services.proto_gen.helix.v1 import shard_pb2, shard_pb2_grpc

log = logging.getLogger(__name__)
State = shard_pb2.ShardState
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
STATUS_TIMEOUT_S = 2.0
WATCH_INTERVAL_S = 1.0
MISSED_STATUS_LIMIT = 3  # unanswered Status polls before rank 0 counts as gone
_END = object()


class ShardLink:
    def __init__(
        self,
        address: str,
        requests: LiveRequests,
        *,
        delay_s: float = 0.0,
        on_ready_change: Callable[[bool], None] = lambda ready: None,
        before_ready: Callable[[shard_pb2.ShardStatus], None] = lambda status: None,
    ):
        self.address = address
        self._requests = requests
        self._on_ready_change = on_ready_change
        self._before_ready = before_ready
        self._channel = grpc.insecure_channel(address, options=channel_options())
        self._stub = shard_pb2_grpc.ShardStub(self._channel)
        self.status: shard_pb2.ShardStatus | None = None  # rank 0's latest status while READY
        self._ready = threading.Event()
        self._closed = threading.Event()
        self.stopping = False  # set while the cluster shuts down: losing rank 0 is then expected
        self._commands: queue.SimpleQueue | None = None
        self._outgoing = DelayLine(delay_s, self._send_now, "shard-commands") if delay_s > 0 else None
        self._incoming = DelayLine(delay_s, self._deliver_now, "shard-events") if delay_s > 0 else None
        self._thread = threading.Thread(target=self._run, name="shard-link", daemon=True)

    # ---- public -------------------------------------------------------------------------------
    def start(self) -> "ShardLink":
        self._thread.start()
        return self

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def admit(self, admit: shard_pb2.Admit) -> None:
        self._send(shard_pb2.ShardCommand(admit=admit))

    def cancel(self, request_id: str) -> None:
        self._send(shard_pb2.ShardCommand(cancel=shard_pb2.CancelAdmitted(request_id=request_id)))

    def shard_status(self, timeout_s: float = STATUS_TIMEOUT_S) -> shard_pb2.ShardStatus:
        return self._stub.Status(shard_pb2.StatusRequest(), timeout=timeout_s)

    def close(self) -> None:
        self._closed.set()
        commands = self._commands
        if commands is not None:
            commands.put(_END)
        for line in (self._outgoing, self._incoming):
            if line is not None:
                line.close()
        self._channel.close()
        self._thread.join(timeout=5)

    # ---- sending ------------------------------------------------------------------------------
    def _send(self, command: shard_pb2.ShardCommand) -> None:
        if self._outgoing is not None:
            self._outgoing.put(command)
        else:
            self._send_now(command)

    def _send_now(self, command) -> None:
        commands = self._commands
        if commands is not None:
            commands.put(command)
        # else: no session; the request was (or is about to be) failed by _run

    @staticmethod
    def _command_stream(commands: queue.SimpleQueue):
        while (command := commands.get()) is not _END:
            yield command

    # ---- receiving ----------------------------------------------------------------------------
    def _receive(self, event: shard_pb2.ShardEvent) -> None:
        if self._incoming is not None:
            self._incoming.put(event)
        else:
            self._deliver_now(event)

    def _deliver_now(self, event) -> None:
        self._requests.deliver(event, time.time_ns())

    # ---- the session loop ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed.is_set():
            status = self._await_ready()
            if status is None:
                return
            reason = self._hold_session(status)
            self._ready.clear()
            self._on_ready_change(False)
            lost = log.info if self._closed.is_set() or self.stopping else log.warning
            lost("lost shard rank 0 at %s: %s", self.address, reason)
            self._requests.fail_all(UNAVAILABLE, f"lost the shard group (rank 0 at {self.address}): {reason}")
            self._closed.wait(0.5)

    def _await_ready(self) -> shard_pb2.ShardStatus | None:
        while not self._closed.is_set():
            try:
                status = self.shard_status()
                if status.state == State.SHARD_STATE_READY:
                    return status
            except grpc.RpcError:
                pass
            self._closed.wait(0.5)
        return None

    def _hold_session(self, status: shard_pb2.ShardStatus) -> str:
        commands: queue.SimpleQueue = queue.SimpleQueue()
        call = self._stub.Session(self._command_stream(commands))
        self.status = status
        self._commands = commands
        lost: list[str] = []
        watch_stop = threading.Event()
        watch = threading.Thread(
            target=self._watch, args=(call, watch_stop, lost), name="shard-watch", daemon=True
        )
        watch.start()
        self._before_ready(status)
        self._ready.set()
        self._on_ready_change(True)
        try:
            for event in call:
                self._receive(event)
            return "rank 0 ended the session"
        except grpc.RpcError as error:
            return lost[0] if lost else f"{error.code().name}: {error.details()}"
        finally:
            self._commands = None
            commands.put(_END)
            watch_stop.set()

    def _watch(self, call, stop: threading.Event, lost: list[str]) -> None:
        """Polls rank 0's Status while the session is open: a silent or FAILED rank 0 ends it."""
        missed = 0
        while not stop.wait(WATCH_INTERVAL_S):
            try:
                status = self.shard_status()
                missed = 0
                self.status = status
                if status.state == State.SHARD_STATE_FAILED:
                    lost.append(f"rank 0 reports FAILED: {status.message}")
                    call.cancel()
                    return
            except grpc.RpcError as error:
                missed += 1
                if missed >= MISSED_STATUS_LIMIT:
                    lost.append(f"rank 0 did not answer Status {missed} times ({error.code().name})")
                    call.cancel()
                    return
