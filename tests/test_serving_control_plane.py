"""The decode loop never waits on the control plane: with every coordinator<->shard message
delayed by 50 ms, a running request keeps its tokens-per-second (only its first token is late)."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("serving_fixtures")
from serving_fixtures import MAIN_CLUSTER_FLAGS, ServeCluster, assert_matches_hf, prompt_of  # noqa: E402

pytest_plugins = ["serving_fixtures"]
pytestmark = pytest.mark.timeout(240)
DELAY_S = 0.050
TOKENS = 150


@pytest.fixture(scope="module")
def delayed_cluster(tmp_path_factory, llama_dir):
    """The main cluster's twin, with the delay injected into the coordinator's shard traffic."""
    cluster = ServeCluster(
        tmp_path_factory.mktemp("delayed"),
        [*MAIN_CLUSTER_FLAGS, "--inject-control-delay-ms", str(DELAY_S * 1000)],
        llama_dir,
    )
    yield cluster
    cluster.stop()


def _best_run(cluster, model_dir):
    """(tokens per second after the first token, time to first token) of the fastest of 3 runs."""
    runs = []
    with cluster.client(timeout_s=120) as client:
        for _ in range(3):
            result = client.generate(prompt_of(8), TOKENS)
            assert_matches_hf(result, model_dir, prompt_of(8))
            runs.append(((TOKENS - 1) / sum(result.ttl_s), result.ttft_s))
    return max(runs)


def test_decode_rate_does_not_depend_on_control_plane_latency(main_cluster, delayed_cluster, llama_dir):
    rate, ttft = _best_run(main_cluster, llama_dir)
    delayed_rate, delayed_ttft = _best_run(delayed_cluster, llama_dir)
    # a loop that waited for the coordinator would pay both directions' delay per token
    lockstep_rate = 1 / (2 * DELAY_S)
    assert rate > 3 * lockstep_rate, (
        f"the undelayed rate {rate:.0f} tokens/s is too slow for this test to mean much"
    )
    assert delayed_ttft > ttft + 1.5 * DELAY_S, "the delay was not injected"
    assert delayed_rate > 0.7 * rate, f"{delayed_rate:.0f} tokens/s with the delay, {rate:.0f} without"
