"""Rank 0's resident decode loop: continuous batching over the shard group.

One thread owns the engine, through the GroupDriver, so each engine call runs on every rank (the
step's metadata travels over the group's own control channel, never over gRPC). gRPC threads only
put commands into `inbox` and read events from session outboxes, so no token ever waits on a
round trip to the coordinator. Each iteration:
  1. take commands; block only when idle, then send heartbeats so followers know rank 0 lives;
  2. fail requests whose deadline passed;
  3. admit waiting requests in arrival order while the batch has a slot and every KVP rank can
     reserve the KV pages of prompt + max_new_tokens (services/shard/admission.py);
  4. prefill at most `prefill_budget` prompt tokens: a long prompt goes in chunks, so running
     streams wait at most one chunk's forward pass per token;
  5. launch the decode step of one token for every running request, then finish the step launched
     in the previous iteration and stream its tokens: the next step is queued on the device while
     the host reads and sends the last one's (Engine.decode_launch), so the device never waits for
     this loop. A request launched after its stop token (known only when that step finishes)
     generates one token too many, which is dropped; max_new_tokens is never overshot;
  6. free the KV of finished and cancelled requests, then report them.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import time
from collections import deque

import grpc

from helix_core.engine import PrefillItem, RequestError, TokenOut
from helix_core.group import HEARTBEAT_INTERVAL_S, GroupDriver
from helix_core.kv_cache import KVCapacityError
from helix_core.sampling import SamplingParams
from services.proto_gen.helix.v1 import coordinator_pb2, shard_pb2
from services.shard.admission import KVReservations
from services.shard.commands import AdmitCommand, CancelCommand, EndSessionCommand, ShutdownCommand
from services.shard.live_request import LiveRequest
from services.shard.sessions import SessionHub

log = logging.getLogger(__name__)

FinishReason = coordinator_pb2.FinishReason


def _code(status: grpc.StatusCode) -> int:
    return status.value[0]


class GroupFailure(RuntimeError):
    """The group can no longer run steps: a rank died or a collective timed out."""


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class Scheduler:
    def __init__(
        self,
        driver: GroupDriver,
        hub: SessionHub,
        metrics,
        reservations: KVReservations,
        *,
        vocab_size: int,
        max_context_tokens: int,
        max_batch_size: int,
        max_waiting_requests: int,
        prefill_budget: int,
        profile_every_n_steps: int = 0,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
    ):
        self.driver, self.hub, self.metrics, self.reservations = driver, hub, metrics, reservations
        self.vocab_size = vocab_size
        self.max_context_tokens = max_context_tokens
        self.max_batch_size = max_batch_size
        self.max_waiting_requests = max_waiting_requests
        self.prefill_budget = max(1, prefill_budget)
        self.profile_every_n_steps = profile_every_n_steps
        # followers fail when the control channel is silent for a collective timeout: beat well inside it
        self.heartbeat_interval_s = heartbeat_interval_s
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.waiting: deque[LiveRequest] = deque()
        self.active: dict[int, LiveRequest] = {}  # seq_id -> request, in admission order
        self.decode_steps = 0
        self.failure: str | None = None
        self._by_key: dict[tuple[int, str], LiveRequest] = {}
        self._seq_ids = itertools.count()
        self._to_free: list[int] = []
        self._endings: list[tuple[int, shard_pb2.ShardEvent]] = []  # sent once their KV is freed
        self._draining = False
        self._drain_deadline_s = math.inf
        self._last_broadcast_s = time.monotonic()
        self.group_call_since_s: float | None = None  # when the group command in progress began
        self._in_flight: tuple[int, list[LiveRequest]] | None = None  # launched decode step, its requests

    # ---- called from other threads ------------------------------------------------------------
    def submit(self, command) -> None:
        self.inbox.put(command)

    def set_profiling(self, every_n_steps: int) -> int:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        previous, self.profile_every_n_steps = self.profile_every_n_steps, every_n_steps
        return previous

    @property
    def draining(self) -> bool:
        return self._draining

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        """Runs until a Shutdown has drained every request, or the group fails."""
        try:
            while self._iterate():
                pass
            self._finish_in_flight()
            self.driver.shutdown()
        except GroupFailure as failure:
            self.failure = str(failure)
            log.error("shard group failed: %s", failure)
            for session_id, event in self._endings:  # ended before the failure: their events stand
                self.hub.send(session_id, event)
            message = f"the shard group failed ({failure}); it must be restarted"
            for request in [*self.waiting, *self.active.values()]:
                self._send_failed(request, grpc.StatusCode.UNAVAILABLE, message)
        finally:
            self.hub.close()
            self._update_gauges()

    def _iterate(self) -> bool:
        self._take_commands()
        self._expire_deadlines()
        self._flush_endings()  # cancelled KV is freed before anything else is admitted into it
        if self._draining:
            if not self.waiting and not self.active:
                return False
            if time.monotonic() >= self._drain_deadline_s:
                self._cancel_all("the shard group's drain grace period ended")
        self._admit()
        self._prefill()
        self._decode()
        self._flush_endings()
        self._update_gauges()
        return True

    def _take_commands(self) -> None:
        block = not (self.waiting or self.active or self._draining or self._in_flight)
        while True:
            try:
                if block:
                    since = time.monotonic() - self._last_broadcast_s
                    command = self.inbox.get(timeout=max(0.0, self.heartbeat_interval_s - since))
                else:
                    command = self.inbox.get_nowait()
            except queue.Empty:
                if block:
                    self._heartbeat()
                return
            self._handle(command)
            block = False

    def _heartbeat(self) -> None:
        if time.monotonic() - self._last_broadcast_s >= self.heartbeat_interval_s:
            self._on_group("heartbeat")

    # ---- commands -----------------------------------------------------------------------------
    def _handle(self, command) -> None:
        if isinstance(command, AdmitCommand):
            self._on_admit(command)
        elif isinstance(command, CancelCommand):
            request = self._by_key.get((command.session_id, command.request_id))
            if request is not None:
                self._finish(request, FinishReason.FINISH_REASON_CANCELLED)
        elif isinstance(command, EndSessionCommand):
            for request in [r for r in self._by_key.values() if r.session_id == command.session_id]:
                self._drop(request)
        elif isinstance(command, ShutdownCommand):
            self._draining = True
            if not command.drain:
                self._cancel_all("the shard group is shutting down")
            elif command.grace_s > 0:
                self._drain_deadline_s = min(self._drain_deadline_s, time.monotonic() + command.grace_s)
        else:
            raise TypeError(f"unknown scheduler command {command!r}")

    def _on_admit(self, command: AdmitCommand) -> None:
        admit = command.admit
        key = (command.session_id, admit.request_id)
        try:
            if key in self._by_key:
                raise _Refused(grpc.StatusCode.ALREADY_EXISTS, f"request_id {admit.request_id!r} is live")
            if self._draining:
                raise _Refused(grpc.StatusCode.UNAVAILABLE, "the shard group is shutting down")
            if self.max_waiting_requests and len(self.waiting) >= self.max_waiting_requests:
                raise _Refused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{len(self.waiting)} requests already wait for admission (the limit)",
                )
            request = self._new_request(command)
        except _Refused as refused:
            event = shard_pb2.ShardEvent(
                failed=shard_pb2.RequestFailed(
                    request_id=admit.request_id, code=_code(refused.code), message=str(refused)
                )
            )
            self.hub.send(command.session_id, event)
            return
        self._by_key[key] = request
        self.waiting.append(request)

    def _new_request(self, command: AdmitCommand) -> LiveRequest:
        """Checks what the engine would refuse later, so that a bad Admit fails alone, at once."""
        admit = command.admit
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        prompt = list(admit.prompt_token_ids)
        if not prompt:
            raise _Refused(invalid, "prompt_token_ids is empty")
        largest = max(max(prompt), max(admit.stop_token_ids, default=0))  # one C pass, even for 1M tokens
        if largest >= self.vocab_size:
            raise _Refused(invalid, f"token id {largest} is outside the vocabulary [0, {self.vocab_size})")
        if admit.max_new_tokens < 1:
            raise _Refused(invalid, f"max_new_tokens must be >= 1, got {admit.max_new_tokens}")
        total = len(prompt) + admit.max_new_tokens
        if total > self.max_context_tokens:
            raise _Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"prompt + max_new_tokens = {total} tokens exceeds max_context_tokens "
                f"{self.max_context_tokens}",
            )
        sampling = SamplingParams(
            temperature=float(admit.sampling.temperature),
            top_k=int(admit.sampling.top_k),
            top_p=float(admit.sampling.top_p) or 1.0,
            seed=int(admit.sampling.seed) if admit.sampling.HasField("seed") else None,
        )
        try:
            sampling.validate()
        except ValueError as error:
            raise _Refused(invalid, f"sampling: {error}") from None
        return LiveRequest(
            request_id=admit.request_id,
            session_id=command.session_id,
            seq_id=next(self._seq_ids),
            prompt=prompt,
            sampling=sampling,
            max_new_tokens=admit.max_new_tokens,
            stop_token_ids=frozenset(admit.stop_token_ids),
            return_logprobs=admit.return_logprobs,
            deadline_ns=admit.deadline_unix_ns,
            arrived_s=command.arrived_s,
        )

    # ---- admission ----------------------------------------------------------------------------
    def _admit(self) -> None:
        while self.waiting and len(self.active) < self.max_batch_size:
            request = self.waiting[0]
            if not self.reservations.fits_when_empty(request.total_tokens):  # max_context_tokens guards this
                self._fail(
                    request,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{request.total_tokens} tokens of KV cannot fit the KV pages of every KVP rank",
                )
                continue
            reservation = self.reservations.try_reserve(request.total_tokens)
            if reservation is None:
                return  # in arrival order: a long request is not overtaken forever by short ones
            self.waiting.popleft()
            request.reservation = reservation
            request.admitted_s = time.monotonic()
            self.active[request.seq_id] = request

    def _expire_deadlines(self) -> None:
        now_ns = time.time_ns()
        for request in [*self.waiting, *self.active.values()]:
            if request.deadline_ns and now_ns >= request.deadline_ns:
                where = "decoding" if request.prefill_done else "waiting or in prefill"
                self._fail(request, grpc.StatusCode.DEADLINE_EXCEEDED, f"the deadline passed while {where}")

    # ---- steps --------------------------------------------------------------------------------
    def _prefill(self) -> None:
        budget, batch = self.prefill_budget, []
        for request in self.active.values():
            if budget == 0:
                break
            if request.prefill_done:
                continue
            end = min(len(request.prompt), request.prefilled + budget)
            chunk = request.prompt[request.prefilled : end]
            final = end == len(request.prompt)
            batch.append((request, PrefillItem(request.seq_id, chunk, request.sampling, final=final)))
            budget -= len(chunk)
        if not batch:
            return
        started = time.perf_counter()
        outs = self._engine_step("prefill", [request for request, _ in batch], [item for _, item in batch])
        elapsed = time.perf_counter() - started
        if outs is None:
            return
        for request, item in batch:
            request.prefilled += len(item.token_ids)
            request.prefill_s += elapsed
            self.metrics.prefill_chunk.observe(elapsed)
            self.metrics.prefill_tokens.inc(len(item.token_ids))
        self._emit_tokens(outs)

    def _decode(self) -> None:
        every = self.profile_every_n_steps
        profile = every > 0 and self.decode_steps % every == 0
        running = self._to_decode()
        if profile or not running:
            self._finish_in_flight()  # a profiled step runs alone, on the host's tokens
            running = self._to_decode()
        if not running:
            return
        ids = [request.seq_id for request in running]
        # the step's time and count are recorded on every rank by the engine's profiler hooks
        if profile:
            outs = self._engine_step("decode", running, ids, profile=True)
            if outs is not None:
                self._count_step(running)
                self._emit_tokens(outs)
            return
        ticket = self._engine_step("decode_launch", running, ids)
        if ticket is None:
            return
        self._count_step(running)
        for request in running:
            request.in_flight += 1
        self._finish_in_flight()
        self._in_flight = (ticket, running)

    def _to_decode(self) -> list[LiveRequest]:
        return [r for r in self.active.values() if r.prefill_done and not r.last_token_launched(self.max_context_tokens)]

    def _count_step(self, running: list[LiveRequest]) -> None:
        self.metrics.batch_size.set(len(running))
        self.decode_steps += 1

    def _finish_in_flight(self) -> None:
        """Read the launched decode step's tokens and stream them."""
        if self._in_flight is None:
            return
        (ticket, requests), self._in_flight = self._in_flight, None
        outs = self._engine_step("decode_finish", requests, ticket)
        for request in requests:
            request.in_flight -= 1
        if outs is not None:
            self._emit_tokens(outs)

    def _engine_step(self, name: str, requests: list[LiveRequest], *args, **kwargs) -> list[TokenOut] | None:
        """Runs an engine command on the group. A refusal (validation, identical on every rank and
        before any collective) fails just these requests; anything else is a group failure."""
        try:
            return self._on_group(name, *args, **kwargs)
        except (KVCapacityError, RequestError, ValueError) as error:
            # the scheduler checks what the engine checks, so only the KV check may legitimately trip
            kv_full = isinstance(error, KVCapacityError)
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if kv_full else grpc.StatusCode.INTERNAL
            log.warning("%s refused for %d requests: %s", name, len(requests), error)
            for request in requests:
                self._fail(request, code, f"the engine refused the request: {error}")
            return None

    def _on_group(self, name: str, *args, **kwargs):
        """Runs a command on every rank (GroupDriver: a broadcast, then the command itself); any error
        that is not a request refusal means the group is broken."""
        self.group_call_since_s = time.monotonic()
        try:
            if name == "heartbeat":
                return self.driver.heartbeat()
            return self.driver.call(name, *args, **kwargs)
        except (RequestError, KVCapacityError, ValueError):
            raise
        except Exception as error:
            raise GroupFailure(f"{name}: {type(error).__name__}: {error}") from error
        finally:
            self.group_call_since_s = None
            self._last_broadcast_s = time.monotonic()

    def _emit_tokens(self, outs: list[TokenOut]) -> None:
        batches: dict[int, shard_pb2.TokenBatch] = {}
        now_ns = time.time_ns()
        finished = []
        for out in outs:
            request = self.active.get(out.seq_id)
            if request is None:
                continue
            batch = batches.setdefault(request.session_id, shard_pb2.TokenBatch(server_time_ns=now_ns))
            batch.tokens.add(
                request_id=request.request_id,
                token_id=out.token_id,
                index=request.generated,
                logprob=out.logprob if request.return_logprobs else 0.0,
            )
            request.generated += 1
            reason = self._finish_reason(request, out.token_id)
            if reason is not None:
                finished.append((request, reason))
        for session_id, batch in batches.items():
            self.hub.send(session_id, shard_pb2.ShardEvent(tokens=batch))
        for request, reason in finished:
            self._finish(request, reason)

    def _finish_reason(self, request: LiveRequest, token_id: int):
        if token_id in request.stop_token_ids:
            return FinishReason.FINISH_REASON_STOP_TOKEN
        if request.generated >= request.max_new_tokens:
            return FinishReason.FINISH_REASON_LENGTH
        if len(request.prompt) + request.generated >= self.max_context_tokens:
            return FinishReason.FINISH_REASON_MAX_CONTEXT
        return None

    # ---- endings ------------------------------------------------------------------------------
    def _release(self, request: LiveRequest) -> None:
        """Forget a request; its KV is freed on every rank at the end of this iteration."""
        self._by_key.pop(request.key, None)
        if self.active.pop(request.seq_id, None) is not None:
            self._to_free.append(request.seq_id)
            self.reservations.release(request.reservation)
        else:
            self.waiting.remove(request)

    def _finish(self, request: LiveRequest, reason) -> None:
        self._release(request)
        now = time.monotonic()
        event = shard_pb2.ShardEvent(
            finished=shard_pb2.RequestFinished(
                request_id=request.request_id,
                reason=reason,
                generated_tokens=request.generated,
                queue_time_ns=int(((request.admitted_s or now) - request.arrived_s) * 1e9),
                prefill_time_ns=int(request.prefill_s * 1e9),
            )
        )
        self._endings.append((request.session_id, event))

    def _fail(self, request: LiveRequest, code: grpc.StatusCode, message: str) -> None:
        self._release(request)
        self._endings.append((request.session_id, _failed_event(request, code, message)))

    def _send_failed(self, request: LiveRequest, code: grpc.StatusCode, message: str) -> None:
        self.hub.send(request.session_id, _failed_event(request, code, message))

    def _drop(self, request: LiveRequest) -> None:
        self._release(request)

    def _cancel_all(self, why: str) -> None:
        log.info("cancelling %d requests: %s", len(self._by_key), why)
        for request in list(self._by_key.values()):
            self._finish(request, FinishReason.FINISH_REASON_CANCELLED)

    def _flush_endings(self) -> None:
        if self._to_free:
            seq_ids, self._to_free = self._to_free, []
            self._on_group("free", seq_ids)
        endings, self._endings = self._endings, []
        for session_id, event in endings:
            self.hub.send(session_id, event)

    def _update_gauges(self) -> None:
        self.metrics.running_requests.set(len(self.active))
        self.metrics.waiting_requests.set(len(self.waiting))


def _failed_event(request: LiveRequest, code: grpc.StatusCode, message: str) -> shard_pb2.ShardEvent:
    return shard_pb2.ShardEvent(
        failed=shard_pb2.RequestFailed(request_id=request.request_id, code=_code(code), message=message)
    )
