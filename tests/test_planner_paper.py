"""The planner against the Helix paper (arXiv 2507.07120): Appendix A / Figure 1 to 1%, the headline
ratios on GB200 NVL72 to 20%; the HOP-B gains, which the planner does not reproduce, are pinned
where docs/planner.md explains them."""
import pytest

from helix_core.planner.paper import figure1, format_checks, headline, headline_checks


def test_figure1_read_times_match_the_papers_formulas_within_1_percent():
    checks = figure1()
    assert len(checks) == 8
    for c in checks:
        assert abs(c.error) < 0.01, format_checks(checks)


@pytest.fixture(scope="module")
def checks():
    return {c.name: c for c in headline_checks()}


@pytest.mark.parametrize("name", [
    "DeepSeek-R1: tokens/s/user, Helix / best baseline",
    "DeepSeek-R1: tokens/s/GPU at the same TTL (up to)",
    "Llama-3.1-405B: max tokens/s/user, Helix / best baseline",
    "Llama-3.1-405B: tokens/s/GPU at the same TTL (up to)",
])
def test_headline_ratios_within_20_percent(checks, name):
    assert abs(checks[name].error) < 0.20, format_checks(list(checks.values()))


def test_hopb_gains_are_where_the_docs_say(checks):
    """docs/planner.md: an all-to-all costs latency + bytes / bandwidth; HOP-B hides the bytes of
    all pieces but the last, never the latency. Llama's exchange is a few KB per sequence, so HOP-B
    gains ~0 (paper: 12%); DeepSeek's is the 512-wide latent of all 128 heads, so it gains more
    than the paper's ~1%."""
    llama = checks["Llama-3.1-405B: HOP-B tokens/s/user gain (up to)"].planner
    deepseek = checks["DeepSeek-R1: HOP-B tokens/s/user gain (about)"].planner
    assert 0 <= llama < 1.0 and 5.0 < deepseek < 25.0
    # with the values exchanged after W_UV (128 per head instead of 512) DeepSeek's gain shrinks
    small = headline("deepseek-r1", exchange_values=128)
    assert 100 * small.hopb_gain < deepseek / 2


def test_helix_wins_where_the_paper_says_it_does():
    for model in ("deepseek-r1", "llama-3.1-405b"):
        h = headline(model)
        assert h.best_helix.startswith("helix") and "N=64" in h.best_helix
        assert h.user_ratio > 1 and h.gpu_ratio > 1
