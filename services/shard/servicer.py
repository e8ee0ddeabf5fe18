"""The helix.v1.Shard gRPC service of one shard process (see protos/helix/v1/shard.proto).

Handlers never touch the engine: they read the runtime's status, or hand commands to the
scheduler's inbox and stream events from a session outbox.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import grpc

from services.proto_gen.helix.v1 import shard_pb2, shard_pb2_grpc
from services.shard.commands import AdmitCommand, CancelCommand, EndSessionCommand
from services.shard.runtime import ShardRuntime
from services.shard.sessions import CLOSED, REPLACED

log = logging.getLogger(__name__)
State = shard_pb2.ShardState
_POLL_S = 0.5  # how often a waiting handler re-checks that its call is still alive


class ShardServicer(shard_pb2_grpc.ShardServicer):
    def __init__(self, runtime: ShardRuntime):
        self.runtime = runtime

    def Load(self, request, context):
        """The process loads what its flags say at start; Load confirms it (or says what differs)."""
        config = self.runtime.config
        wanted = (
            request.checkpoint_path
            and Path(request.checkpoint_path).resolve() != Path(config.model_dir).resolve()
        )
        if wanted:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"checkpoint_path: this shard serves {config.model_dir}; restart it with "
                f"--model {request.checkpoint_path} to change models",
            )
        if request.plan_spec and request.plan_spec.replace(" ", "") != config.plan_spec.replace(" ", ""):
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"plan_spec: this shard runs plan {config.plan_spec}; restart it to change plans",
            )
        while (
            self.runtime.state in (State.SHARD_STATE_EMPTY, State.SHARD_STATE_LOADING) and context.is_active()
        ):
            remaining = context.time_remaining()
            if remaining is not None and remaining < _POLL_S:
                break
            time.sleep(_POLL_S)
        return self.runtime.status()

    def Status(self, request, context):
        return self.runtime.status()

    def SetProfiling(self, request, context):
        scheduler = self._rank0_scheduler(context)
        return shard_pb2.SetProfilingResponse(
            previous_every_n_steps=scheduler.set_profiling(request.every_n_steps)
        )

    def Shutdown(self, request, context):
        self.runtime.request_shutdown(drain=request.drain, grace_s=float(request.grace_period_s))
        return shard_pb2.ShutdownResponse()

    def Session(self, request_iterator, context):
        scheduler = self._rank0_scheduler(context)
        session = self.runtime.hub.open()
        log.info("session %d opened by %s", session.session_id, context.peer())

        def ended():
            self.runtime.hub.forget(session)
            scheduler.submit(EndSessionCommand(session.session_id))

        if not context.add_callback(ended):
            ended()  # the coordinator left before this handler ran: gRPC will run no callback
            return
        threading.Thread(
            target=self._read_commands,
            args=(request_iterator, session.session_id, scheduler),
            name=f"session-{session.session_id}-reader",
            daemon=True,
        ).start()
        while context.is_active():
            try:
                event = session.outbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if event == REPLACED:
                context.abort(grpc.StatusCode.ABORTED, "a newer Session replaced this one")
            if event == CLOSED:
                if scheduler.failure:
                    context.abort(grpc.StatusCode.UNAVAILABLE, f"the shard group failed: {scheduler.failure}")
                return
            yield event

    @staticmethod
    def _read_commands(request_iterator, session_id: int, scheduler) -> None:
        try:
            for command in request_iterator:
                kind = command.WhichOneof("command")
                if kind == "admit":
                    scheduler.submit(AdmitCommand(session_id, command.admit, time.monotonic()))
                elif kind == "cancel":
                    scheduler.submit(CancelCommand(session_id, command.cancel.request_id))
        except grpc.RpcError:
            pass  # the stream ended; the done-callback tells the scheduler

    def _rank0_scheduler(self, context):
        if self.runtime.config.rank != 0:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this is shard rank {self.runtime.config.rank}; only rank 0 runs the scheduler",
            )
        scheduler = self.runtime.scheduler
        if scheduler is None or self.runtime.state != State.SHARD_STATE_READY:
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"shard not ready ({State.Name(self.runtime.state)}: {self.runtime.message})",
            )
        return scheduler
