"""A shard that dies or hangs fails the requests in flight with UNAVAILABLE within seconds (never a
hang); `helix serve` then restarts the group on a new rendezvous and serves again."""

from __future__ import annotations

import os
import signal
import time

import pytest

pytest.register_assert_rewrite("serving_fixtures")
from serving_fixtures import ServeCluster, assert_matches_hf, prompt_of, wait_until  # noqa: E402

from services.client import Unavailable  # noqa: E402

pytest_plugins = ["serving_fixtures"]
pytestmark = pytest.mark.timeout(300)
COLLECTIVE_TIMEOUT_S = 3
FAIL_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, llama_dir):
    cluster = ServeCluster(
        tmp_path_factory.mktemp("faults"),
        ["--collective-timeout-s", str(COLLECTIVE_TIMEOUT_S), "--max-restarts", "5"],
        llama_dir,
    )
    yield cluster
    cluster.stop()
    assert not cluster.leftover_shards()


def _fail_mid_stream(cluster, rank: int, signum: int) -> float:
    """Stream, then signal shard `rank`; returns the seconds until the stream failed UNAVAILABLE."""
    with cluster.client(timeout_s=120) as client:
        stream = client.stream(prompt_of(10), 1500)
        for _ in range(10):
            next(stream)
        os.kill(cluster.shard(rank)["pid"], signum)
        hit = time.monotonic()
        with pytest.raises(Unavailable) as failure:
            list(stream)
        elapsed = time.monotonic() - hit
    assert "shard group" in failure.value.message
    return elapsed


def _serves_again(cluster, restarts: int, llama_dir) -> None:
    wait_until(lambda: cluster.ready["restarts"] == restarts, 30, f"restart {restarts} of the group")

    def answered():
        try:
            with cluster.client(timeout_s=30) as client:
                return client.generate([5, 6, 7], 8)
        except Unavailable:
            return None

    result = wait_until(answered, 60, "the restarted group to serve", interval_s=0.5)
    assert_matches_hf(result, llama_dir, [5, 6, 7])


@pytest.mark.parametrize(
    "rank, signum, restarts",
    [
        (1, signal.SIGKILL, 1),  # a follower dies: rank 0's next collective fails at once
        (0, signal.SIGKILL, 2),  # rank 0 dies: the coordinator's Session breaks
        (1, signal.SIGSTOP, 3),  # a follower hangs: rank 0's collective times out
    ],
    ids=["follower-killed", "rank0-killed", "follower-hung"],
)
def test_a_lost_shard_fails_requests_fast_and_the_group_restarts(cluster, llama_dir, rank, signum, restarts):
    elapsed = _fail_mid_stream(cluster, rank, signum)
    assert elapsed < FAIL_WITHIN_S, f"UNAVAILABLE took {elapsed:.1f} s"
    if signum == signal.SIGSTOP:
        assert elapsed > COLLECTIVE_TIMEOUT_S * 0.8  # detected by the timeout, as it must be
    _serves_again(cluster, restarts, llama_dir)
