"""Continuous batching: concurrent requests share decode steps, join running batches, stay exact;
a long prompt is prefilled in chunks that do not stall running streams."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.register_assert_rewrite("serving_fixtures")
from serving_fixtures import assert_matches_hf, prompt_of, sample, wait_until  # noqa: E402

pytest_plugins = ["serving_fixtures"]
pytestmark = pytest.mark.timeout(300)

CLIENTS = 16


def _decode_steps(cluster) -> float:
    return sample(cluster.shard_metrics(0), "helix_decode_steps_total", shard_rank="0")


def _kv_used(cluster) -> list[float]:
    return [
        sample(cluster.shard_metrics(rank), "helix_kv_cache_used_pages", shard_rank=str(rank))
        for rank in (0, 1)
    ]


def test_sixteen_concurrent_clients_are_batched_and_each_exact(main_cluster, llama_dir):
    requests = [(prompt_of(3 + 37 * i % 40, salt=i), 8 + (11 * i) % 33) for i in range(CLIENTS)]
    steps_before = _decode_steps(main_cluster)

    def run(index):
        prompt, max_new_tokens = requests[index]
        time.sleep(0.04 * index)  # staggered, so that later requests arrive while earlier ones decode
        with main_cluster.client(timeout_s=120) as client:
            stream = client.stream(prompt, max_new_tokens)
            events = list(stream)
            return stream.result, [event.server_time_ns for event in events]

    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(run, range(CLIENTS)))

    for (prompt, max_new_tokens), (result, _) in zip(requests, outcomes):
        assert result.finish_reason == "length" and result.generated_tokens == max_new_tokens
        assert_matches_hf(result, llama_dir, prompt)

    # Batched: each request's first token comes from its prefill, every later one from a decode
    # step; one request per step would take sum(n - 1) steps.
    decode_tokens = sum(result.generated_tokens - 1 for result, _ in outcomes)
    steps = _decode_steps(main_cluster) - steps_before
    assert steps < 0.6 * decode_tokens, f"{steps} decode steps for {decode_tokens} decode tokens"

    # Joined mid-stream: B's first token arrived while A was streaming, and later tokens of A and B
    # came out of the same step (the coordinator stamps all tokens of one TokenBatch alike).
    def joined(a, b):
        a_times, b_times = a[1], b[1]
        return a_times[0] < b_times[0] < a_times[-1] and set(a_times) & set(b_times[1:])

    pairs = [
        (i, j) for i in range(CLIENTS) for j in range(CLIENTS) if i != j and joined(outcomes[i], outcomes[j])
    ]
    assert len(pairs) >= CLIENTS // 2, f"only {pairs} joined a running batch"
    wait_until(lambda: _kv_used(main_cluster) == [0, 0], 10, "KV pages to be freed on both shards")


def test_long_prompt_is_prefilled_in_chunks_without_stalling_streams(main_cluster, llama_dir):
    long_prompt = prompt_of(1100, salt=5)  # 18 chunks of the cluster's 64-token prefill budget
    with main_cluster.client(timeout_s=120) as client:
        arrivals, started = [], threading.Event()

        def stream_a():
            for _ in client.stream([9, 8, 7], 200):
                arrivals.append(time.perf_counter())
                if len(arrivals) == 20:
                    started.set()

        thread = threading.Thread(target=stream_a)
        thread.start()
        assert started.wait(60)
        submitted = time.perf_counter()
        result_b = client.generate(long_prompt, 2)
        thread.join(timeout=120)

    assert_matches_hf(result_b, llama_dir, long_prompt)
    first_token_b = submitted + result_b.ttft_s
    stalls = [
        later - earlier
        for earlier, later in zip(arrivals, arrivals[1:])
        if earlier < first_token_b and later > submitted
    ]
    usual = statistics.median(later - earlier for earlier, later in zip(arrivals, arrivals[1:]))
    prefill_s = result_b.server.prefill_time_s
    assert prefill_s > 5 * usual, "B's prompt is too short to tell chunked from whole prefill here"
    # Prefilled in one pass, B would stall stream A for all of prefill_s at once; in chunks, A
    # waits about one chunk per token.
    assert max(stalls) < 0.5 * prefill_s, (
        f"stream A stalled {max(stalls):.3f} s; B's prefill took {prefill_s:.3f} s"
    )
