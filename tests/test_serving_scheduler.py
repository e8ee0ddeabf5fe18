"""The scheduler and KV admission in one process: a real single-rank engine, no gRPC.

KV reservations are checked against the engine's own PagedKVCache; the scheduler's tokens against
Hugging Face; its admission, chunking, cancellation, deadlines and drain through its events.
"""

from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest
import torch

pytest.register_assert_rewrite("serving_fixtures")
from serving_fixtures import hf_greedy, prompt_of, wait_until  # noqa: E402

from helix_core.comm import Comm  # noqa: E402
from helix_core.engine import Engine, EngineOptions  # noqa: E402
from helix_core.group import GroupDriver  # noqa: E402
from helix_core.kv_cache import PagedKVCache, StagePlacement  # noqa: E402
from helix_core.plan import Plan  # noqa: E402
from services.metrics import ShardMetrics  # noqa: E402
from services.proto_gen.helix.v1 import coordinator_pb2, shard_pb2  # noqa: E402
from services.shard.admission import KVReservations  # noqa: E402
from services.shard.commands import AdmitCommand, CancelCommand, EndSessionCommand, ShutdownCommand  # noqa: E402
from services.shard.scheduler import Scheduler  # noqa: E402
from services.shard.sessions import CLOSED, SessionHub  # noqa: E402

pytest_plugins = ["serving_fixtures"]
pytestmark = pytest.mark.timeout(120)
PAGE = 16
KV_PAGES = 6  # 96 tokens: two requests of 80 and 50 tokens cannot share it
Reason = coordinator_pb2.FinishReason


@pytest.mark.parametrize("kvp, stage", [(2, 16), (3, 16), (4, 8)])
def test_reservations_cover_what_the_engine_cache_takes(kvp, stage):
    """For every length and first rank, the engine's PagedKVCache never uses more pages on a KVP
    rank than admission reserves, and for some first rank it uses exactly that many."""
    placement = StagePlacement(kvp, stage)
    reservations = KVReservations(placement, PAGE, pages_per_rank=10_000)
    for length in range(0, 300, 7):
        reserved = reservations.pages_for(length)
        used_by_start = []
        for start in range(kvp):
            cache = PagedKVCache(
                num_layers=1,
                num_pages=64,
                page_size=PAGE,
                kv_heads=1,
                key_dim=1,
                value_dim=None,
                placement=placement,
                kvp_rank=0,
                dtype=torch.float32,
                device=torch.device("cpu"),
            )
            cache.add_sequence(0, start)
            cache.grow(0, length)
            used_by_start.append(cache.pages_used_per_rank())
        for rank in range(kvp):
            assert max(used[rank] for used in used_by_start) == reserved[rank], (length, rank)


def test_max_sequence_tokens_is_the_longest_that_fits():
    reservations = KVReservations(StagePlacement(2, 16), PAGE, pages_per_rank=KV_PAGES)
    longest = reservations.max_sequence_tokens(10_000)
    assert reservations.fits_when_empty(longest) and not reservations.fits_when_empty(longest + 1)
    assert reservations.max_sequence_tokens(50) == 50  # the model's limit, when lower


class _Harness:
    """A scheduler thread over a 1-rank engine, and the events of one session."""

    def __init__(self, model_dir, engine_options: dict | None = None, **scheduler_options):
        plan = Plan.helix(kvp=1, tpa=1)
        device = torch.device("cpu")
        options = EngineOptions(page_size=PAGE, stage_size=PAGE, kv_pages=KV_PAGES, prefill_chunk=32,
                                **(engine_options or {}))
        self.engine = Engine(str(model_dir), plan, 0, Comm(plan, 0, device), device, options)
        self.metrics = ShardMetrics.create(shard_rank=0, include_process_metrics=False)
        self.hub = SessionHub()
        self.session = self.hub.open()
        reservations = KVReservations(self.engine.cache.placement, PAGE, KV_PAGES)
        settings = dict(
            vocab_size=256,
            max_context_tokens=reservations.max_sequence_tokens(1024),
            max_batch_size=8,
            max_waiting_requests=0,
            prefill_budget=32,
        )
        self.scheduler = Scheduler(
            GroupDriver(self.engine),
            self.hub,
            self.metrics,
            reservations,
            **{**settings, **scheduler_options},
        )
        self.thread = threading.Thread(target=self.scheduler.run, daemon=True)
        self.thread.start()
        self.log: list[tuple[str, str, object]] = []  # (kind, request id, payload) in arrival order

    def admit(self, request_id, prompt, max_new_tokens, deadline_unix_ns=0, stop_token_ids=()):
        admit = shard_pb2.Admit(
            request_id=request_id,
            prompt_token_ids=prompt,
            max_new_tokens=max_new_tokens,
            return_logprobs=True,
            deadline_unix_ns=deadline_unix_ns,
            stop_token_ids=list(stop_token_ids),
        )
        self.scheduler.submit(AdmitCommand(self.session.session_id, admit, time.monotonic()))

    def events_until(self, done, timeout_s: float = 60):
        deadline = time.monotonic() + timeout_s
        while not done():
            try:
                event = self.session.outbox.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out; events so far: {self.log}") from None
            if event == CLOSED:
                self.log.append(("closed", "", None))
                continue
            kind = event.WhichOneof("event")
            if kind == "tokens":
                self.log += [("token", t.request_id, t) for t in event.tokens.tokens]
            else:
                self.log.append((kind, getattr(event, kind).request_id, getattr(event, kind)))

    def ended(self, request_id) -> bool:
        return any(kind in ("finished", "failed") and rid == request_id for kind, rid, _ in self.log)

    def tokens(self, request_id):
        return [payload for kind, rid, payload in self.log if kind == "token" and rid == request_id]

    def ending(self, request_id):
        return next(
            payload for kind, rid, payload in self.log if kind in ("finished", "failed") and rid == request_id
        )

    def position(self, kind, request_id) -> int:
        return next(i for i, (k, rid, _) in enumerate(self.log) if k == kind and rid == request_id)

    def stop(self):
        self.scheduler.submit(ShutdownCommand(drain=False, grace_s=0))
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def harness(llama_dir):
    harness = _Harness(llama_dir)
    yield harness
    harness.stop()


def _assert_exact(harness, request_id, model_dir, prompt, count):
    tokens = harness.tokens(request_id)
    expected, logprobs = hf_greedy(model_dir, prompt, count)
    assert [t.token_id for t in tokens] == expected
    assert [t.index for t in tokens] == list(range(count))
    assert [t.logprob for t in tokens] == pytest.approx(logprobs, abs=1e-4)


def test_a_request_waits_until_every_kvp_rank_has_room_for_its_whole_life(harness, llama_dir):
    first, second = prompt_of(40), prompt_of(30, salt=1)
    harness.admit("a", first, 40)  # 80 tokens: 5 of the 6 pages
    harness.admit("b", second, 20)  # 50 tokens: 4 pages, so it waits for "a" to end
    harness.events_until(lambda: harness.ended("a") and harness.ended("b"))
    assert harness.position("finished", "a") < harness.position("token", "b")
    _assert_exact(harness, "a", llama_dir, first, 40)
    _assert_exact(harness, "b", llama_dir, second, 20)
    assert harness.ending("b").queue_time_ns > 0
    assert harness.engine.cache.pages_used_per_rank() == [0]


def test_requests_that_fit_together_are_decoded_together(harness, llama_dir):
    harness.admit("a", prompt_of(10), 20)
    harness.admit("b", prompt_of(12, salt=3), 20)
    harness.events_until(lambda: harness.ended("a") and harness.ended("b"))
    assert harness.scheduler.decode_steps < 38  # one request per step would take 19 + 19
    _assert_exact(harness, "b", llama_dir, prompt_of(12, salt=3), 20)


def test_a_long_prompt_is_prefilled_in_budget_sized_chunks(harness, llama_dir):
    prompt = prompt_of(70)  # 32 + 32 + 6 tokens
    harness.admit("long", prompt, 3)
    harness.events_until(lambda: harness.ended("long"))
    chunks = harness.metrics.registry.get_sample_value(
        "helix_prefill_chunk_seconds_count", {"shard_rank": "0"}
    )
    assert chunks == 3
    _assert_exact(harness, "long", llama_dir, prompt, 3)


def test_refusals_name_the_problem(harness):
    harness.admit("too-long", prompt_of(50), 60)  # 110 tokens > the 96 the KV can hold
    harness.admit("bad-token", [1, 300], 4)
    harness.admit("no-tokens", [1], 0)
    harness.events_until(lambda: all(harness.ended(r) for r in ("too-long", "bad-token", "no-tokens")))
    codes = {rid: harness.ending(rid).code for rid in ("too-long", "bad-token", "no-tokens")}
    assert codes == {
        "too-long": grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
        "bad-token": grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "no-tokens": grpc.StatusCode.INVALID_ARGUMENT.value[0],
    }
    assert (
        "300" in harness.ending("bad-token").message
        and "max_new_tokens" in harness.ending("no-tokens").message
    )


def test_cancel_deadline_and_session_end_free_the_kv_at_once(harness):
    harness.admit("cancelled", prompt_of(20), 70)
    harness.events_until(lambda: len(harness.tokens("cancelled")) >= 3)
    harness.scheduler.submit(CancelCommand(harness.session.session_id, "cancelled"))
    harness.events_until(lambda: harness.ended("cancelled"))
    assert harness.ending("cancelled").reason == Reason.FINISH_REASON_CANCELLED
    assert harness.engine.cache.pages_used_per_rank() == [0]

    harness.admit("expired", prompt_of(20), 70, deadline_unix_ns=time.time_ns() + 50_000_000)
    harness.events_until(lambda: harness.ended("expired"))
    assert harness.ending("expired").code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert 0 < len(harness.tokens("expired")) < 70
    assert harness.engine.cache.pages_used_per_rank() == [0]

    harness.admit("orphan", prompt_of(20), 70)
    harness.events_until(lambda: len(harness.tokens("orphan")) >= 2)
    harness.scheduler.submit(EndSessionCommand(harness.session.session_id))
    deadline = time.monotonic() + 10
    while harness.scheduler.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not harness.scheduler.active and harness.engine.cache.pages_used_per_rank() == [0]


def test_drain_lets_live_requests_finish_and_refuses_new_ones(llama_dir):
    harness = _Harness(llama_dir)
    harness.admit("live", prompt_of(10), 30)
    harness.events_until(lambda: len(harness.tokens("live")) >= 2)
    harness.scheduler.submit(ShutdownCommand(drain=True, grace_s=0))
    harness.admit("late", prompt_of(5), 5)
    harness.events_until(lambda: harness.ended("live") and harness.ended("late"))
    harness.thread.join(timeout=30)
    assert not harness.thread.is_alive()
    assert harness.ending("live").reason == Reason.FINISH_REASON_LENGTH and len(harness.tokens("live")) == 30
    assert harness.ending("late").code == grpc.StatusCode.UNAVAILABLE.value[0]


def test_a_full_waiting_queue_refuses_more(llama_dir):
    harness = _Harness(llama_dir, max_waiting_requests=1)
    try:
        harness.admit("running", prompt_of(40), 40)  # holds 5 of the 6 pages
        harness.events_until(lambda: len(harness.tokens("running")) >= 1)
        harness.admit("waiting", prompt_of(30), 20)  # needs 4 pages: waits
        harness.admit("refused", prompt_of(30), 20)  # the queue (1) is full
        harness.events_until(lambda: harness.ended("refused"))
        assert harness.ending("refused").code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert "wait" in harness.ending("refused").message
        harness.events_until(lambda: harness.ended("running") and harness.ended("waiting"))
        assert harness.ending("waiting").reason == Reason.FINISH_REASON_LENGTH
    finally:
        harness.stop()


def test_pipelined_steps_stop_exactly_at_stop_tokens_and_max_new_tokens(llama_dir):
    """With the static-shape path (fast_decode on, as on a GPU) each decode step is launched before the
    previous one is finished, its tokens fed back on the device. A request that meets its stop token
    was already launched once more: that token is dropped, its KV freed; the others stay exact."""
    harness = _Harness(llama_dir, engine_options=dict(fast_decode="on", max_batch=8))
    try:
        first, second = prompt_of(10, salt=5), prompt_of(14, salt=6)
        expected, _ = hf_greedy(llama_dir, first, 12)
        stop_at = next(i for i in range(3, 12) if expected[i] not in expected[:i])  # its first occurrence
        harness.admit("a", first, 12, stop_token_ids=[expected[stop_at]])
        harness.admit("b", second, 9)
        harness.events_until(lambda: harness.ended("a") and harness.ended("b"))
        assert [t.token_id for t in harness.tokens("a")] == expected[: stop_at + 1]
        assert [t.index for t in harness.tokens("a")] == list(range(stop_at + 1))
        assert harness.ending("a").reason == Reason.FINISH_REASON_STOP_TOKEN
        assert harness.ending("a").generated_tokens == stop_at + 1
        _assert_exact(harness, "b", llama_dir, second, 9)
        assert harness.ending("b").reason == Reason.FINISH_REASON_LENGTH
        # the step launched after a's stop token is finished without waiting for new work
        wait_until(lambda: not harness.engine._launched, 10, "the last launched step to be finished")
        assert harness.engine.cache.pages_used_per_rank() == [0]
    finally:
        harness.stop()
