"""The public helix.v1.Coordinator service: Generate, Cancel, GetInfo.

A Generate handler validates, registers the request, sends its Admit to rank 0 and then only
reads its own event queue: tokens are pushed to it by the ShardLink as rank 0's steps produce
them. Its TTL observations are the gaps between the tokens it sends, so they match what the
client sees up to network jitter.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid

import grpc

from services import __version__
from services.coordinator.live_requests import Failed, Finished, LiveRequests, StreamedRequest, TokenArrived
from services.coordinator.shard_link import ShardLink
from services.coordinator.tokenizer import IncrementalDetokenizer, encode
from services.coordinator.validation import Rejected, ServingLimits, check_prompt, check_request
from services.metrics import CoordinatorMetrics
from services.proto_gen.helix.v1 import coordinator_pb2 as pb
from services.proto_gen.helix.v1 import coordinator_pb2_grpc, shard_pb2

_POLL_S = 0.25  # how often a stream waiting for tokens re-checks that its client is still there
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_REASONS = {
    pb.FINISH_REASON_LENGTH: "length",
    pb.FINISH_REASON_STOP_TOKEN: "stop_token",
    pb.FINISH_REASON_CANCELLED: "cancelled",
    pb.FINISH_REASON_MAX_CONTEXT: "max_context",
}

# The client's deadline timer and the server's copy of the deadline (propagated as a timeout, so it
# starts when the request's headers are read) differ by that read's delay, which went past an earlier
# 50 ms slack on the loaded 2-core CI machine. A call that ends this close to its deadline is
# counted as expired.
DEADLINE_SLACK_NS = 250_000_000


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(
        self,
        link: ShardLink,
        requests: LiveRequests,
        metrics: CoordinatorMetrics,
        *,
        tokenizer=None,
        max_new_tokens_limit: int = 0,
        max_streams: int = 256,
    ):
        self.link, self.requests, self.metrics = link, requests, metrics
        self.max_streams = max_streams
        self._stream_slots = threading.BoundedSemaphore(max_streams)
        self.tokenizer = tokenizer
        self.max_new_tokens_limit = max_new_tokens_limit
        self.draining = False

    # ---- Generate -----------------------------------------------------------------------------
    def Generate(self, request, context):
        if not self._stream_slots.acquire(blocking=False):
            self._reject(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"all {self.max_streams} Generate stream slots of the coordinator are in use (--max-streams); "
                "retry when a stream ends",
            )
        try:
            yield from self._generate(request, context)
        finally:
            self._stream_slots.release()

    def _generate(self, request, context):
        received_s, received_ns = time.perf_counter(), time.time_ns()
        if self.draining:
            self._reject(context, grpc.StatusCode.UNAVAILABLE, "the coordinator is draining; retry elsewhere")
        limits = self._limits(context)
        try:
            check_request(request, limits, self.tokenizer is not None)
            prompt = list(request.prompt_token_ids) or encode(self.tokenizer, request.prompt_text)
            check_prompt(prompt, request.max_new_tokens, limits)
        except Rejected as rejected:
            self._reject(context, rejected.code, str(rejected))
        request_id = request.request_id or uuid.uuid4().hex
        live = self.requests.add(request_id)
        if live is None:
            self._reject(
                context,
                grpc.StatusCode.ALREADY_EXISTS,
                f"request_id {request_id!r} is in use by a live request",
            )
        deadline_ns = _deadline_ns(context)
        self.metrics.in_flight_requests.inc()
        try:
            if not context.add_callback(lambda: self._on_rpc_end(live, received_s, deadline_ns)):
                # the call was over (client gone or deadline passed) before this handler ran, so no
                # callback will come: count its end here, and admit nothing
                self._count_abandoned(live, received_s, deadline_ns)
                return
            if not self.link.ready:  # checked after registering: a link lost from now on fails `live`
                self._end(live, context, grpc.StatusCode.UNAVAILABLE, "the shard group is not ready")
            self.link.admit(self._admit(request, request_id, prompt, deadline_ns))
            self.metrics.prompt_tokens.inc(len(prompt))
            yield pb.GenerateEvent(
                accepted=pb.Accepted(
                    request_id=request_id, prompt_tokens=len(prompt), server_time_ns=received_ns
                )
            )
            yield from self._stream(live, context, prompt, received_s)
        finally:
            self.requests.remove(live)
            self.metrics.in_flight_requests.dec()

    def _stream(self, live: StreamedRequest, context, prompt: list[int], received_s: float):
        detokenizer = IncrementalDetokenizer(self.tokenizer, prompt) if self.tokenizer else None
        first_token_s = last_token_s = None
        while True:
            try:
                item = live.events.get(timeout=_POLL_S)
            except queue.Empty:
                if not context.is_active():
                    return  # the client left: _on_rpc_end cancels the request on the shards
                continue
            if isinstance(item, TokenArrived):
                now = time.perf_counter()
                if last_token_s is None:
                    first_token_s = now
                    self.metrics.time_to_first_token.observe(now - received_s)
                else:
                    self.metrics.token_to_token_latency.observe(now - last_token_s)
                last_token_s = now
                token = item.token
                self.metrics.generated_tokens.inc()
                yield pb.GenerateEvent(
                    token=pb.Token(
                        token_id=token.token_id,
                        logprob=token.logprob,
                        index=token.index,
                        text=detokenizer.add(token.token_id) if detokenizer else "",
                        server_time_ns=item.received_ns,
                    )
                )
            elif isinstance(item, Finished):
                yield self._finished(live, item.finished, len(prompt), received_s, first_token_s)
                return
            elif isinstance(item, Failed):
                code = _CODES.get(item.code, grpc.StatusCode.INTERNAL)
                self._end(live, context, code, item.message)

    def _finished(
        self,
        live,
        finished: shard_pb2.RequestFinished,
        prompt_tokens: int,
        received_s: float,
        first_token_s: float | None,
    ) -> pb.GenerateEvent:
        now = time.perf_counter()
        if live.end():  # (else the call was already over and counted)
            self.metrics.request_latency.observe(now - received_s)
            self.metrics.queue_time.observe(finished.queue_time_ns / 1e9)
            self.metrics.count_request(_REASONS.get(finished.reason, "error"))
            self._count_rpc("Generate", grpc.StatusCode.OK)
        return pb.GenerateEvent(
            finished=pb.Finished(
                reason=finished.reason,
                prompt_tokens=prompt_tokens,
                generated_tokens=finished.generated_tokens,
                queue_time_ns=finished.queue_time_ns,
                prefill_time_ns=finished.prefill_time_ns,
                time_to_first_token_ns=int(((first_token_s or now) - received_s) * 1e9),
                total_time_ns=int((now - received_s) * 1e9),
            )
        )

    def _end(self, live: StreamedRequest, context, code: grpc.StatusCode, message: str):
        """End a registered request's stream with a non-OK status."""
        if live.end():  # (else the call was already over and counted)
            self.metrics.count_request(
                "deadline_exceeded" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "error"
            )
            self._count_rpc("Generate", code)
        context.abort(code, message)

    def _on_rpc_end(self, live: StreamedRequest, received_s: float, deadline_ns: int) -> None:
        """Runs however the RPC ended; a request the client abandoned is cancelled on the shards."""
        if not self._count_abandoned(live, received_s, deadline_ns):
            return  # the handler ended it first
        self.link.cancel(live.request_id)  # frees its KV at the next step boundary

    def _count_abandoned(self, live: StreamedRequest, received_s: float, deadline_ns: int) -> bool:
        """Count a call that ended without the server ending it: its deadline passed, or the client left
        (False, counting nothing: the server had ended it already)."""
        if not live.end():
            return False
        # the client's own deadline timer can end the RPC a little before the server's clock reaches
        # the propagated deadline: an end within DEADLINE_SLACK_NS of it is the deadline, not a client gone
        expired = deadline_ns and time.time_ns() >= deadline_ns - DEADLINE_SLACK_NS
        self.metrics.count_request("deadline_exceeded" if expired else "client_gone")
        self.metrics.request_latency.observe(time.perf_counter() - received_s)
        self._count_rpc(
            "Generate", grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        )
        return True

    def _reject(self, context, code: grpc.StatusCode, message: str):
        self.metrics.count_request("rejected")
        self._count_rpc("Generate", code)
        context.abort(code, message)

    def _admit(self, request, request_id: str, prompt: list[int], deadline_ns: int) -> shard_pb2.Admit:
        sampling = pb.SamplingParams()
        sampling.CopyFrom(request.sampling)
        if not sampling.top_p:
            sampling.top_p = 1.0
        if not sampling.HasField("seed"):
            sampling.seed = random.getrandbits(63)  # logged with the Admit, so any request can be replayed
        return shard_pb2.Admit(
            request_id=request_id,
            prompt_token_ids=prompt,
            sampling=sampling,
            max_new_tokens=request.max_new_tokens,
            stop_token_ids=request.stop_token_ids,
            return_logprobs=request.return_logprobs,
            deadline_unix_ns=deadline_ns,
        )

    # ---- Cancel, GetInfo ----------------------------------------------------------------------
    def Cancel(self, request, context):
        live = self.requests.get(request.request_id)
        if live is not None and not live.ended:
            self.link.cancel(request.request_id)
        self._count_rpc("Cancel", grpc.StatusCode.OK)
        return pb.CancelResponse(found=live is not None and not live.ended)

    def GetInfo(self, request, context):
        status = self._ready_status(context, "GetInfo")
        model = status.model
        info = pb.ClusterInfo(
            model_type=model.model_type,
            model_name=model.model_name,
            vocab_size=model.vocab_size,
            max_context_tokens=model.max_context_tokens,
            has_tokenizer=self.tokenizer is not None,
            eos_token_ids=model.eos_token_ids,
            plan=model.plan,
            kv_capacity_tokens_per_kvp_rank=[status.kv.capacity_tokens] * max(1, model.plan.kvp_size),
            kv_page_size_tokens=status.kv.page_size_tokens,
            max_batch_size=model.max_batch_size,
            dtype=model.dtype,
            server_version=__version__,
        )
        if model.HasField("bos_token_id"):
            info.bos_token_id = model.bos_token_id
        info.shards.add(
            rank=status.rank,
            kvp_rank=status.kvp_rank,
            tpa_rank=status.tpa_rank,
            head_slice_rank=status.head_slice_rank,
            address=self.link.address,
            device=status.device,
            ready=self.link.ready,
        )
        self._count_rpc("GetInfo", grpc.StatusCode.OK)
        return info

    # ---- helpers ------------------------------------------------------------------------------
    def _ready_status(self, context, method: str) -> shard_pb2.ShardStatus:
        status = self.link.status
        if not self.link.ready or status is None:
            self._count_rpc(method, grpc.StatusCode.UNAVAILABLE)
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the shard group is not ready (rank 0 at {self.link.address}); retry shortly",
            )
        return status

    def _limits(self, context) -> ServingLimits:
        if not self.link.ready or self.link.status is None:
            self._reject(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"the shard group is not ready (rank 0 at {self.link.address}); retry shortly",
            )
        model = self.link.status.model
        limit = self.max_new_tokens_limit or model.max_context_tokens
        return ServingLimits(
            model_name=model.model_name,
            vocab_size=model.vocab_size,
            max_position_embeddings=model.max_position_embeddings,
            max_context_tokens=model.max_context_tokens,
            max_new_tokens=limit,
        )

    def _count_rpc(self, method: str, code: grpc.StatusCode) -> None:
        self.metrics.rpcs.labels(grpc_method=method, grpc_code=code.name).inc()


_NO_DEADLINE_S = 1e8  # grpc reports "no deadline" as a huge time remaining


def _deadline_ns(context) -> int:
    """The client's deadline as wall clock Unix ns (what Admit carries); 0 when it set none."""
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE_S:
        return 0
    return time.time_ns() + int(remaining * 1e9)
