"""helix_core.sampling: HF-equivalent logits processing, greedy, seeded and statistical sampling."""
from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from helix_core.sampling import SamplingParams, processed_logits, sample

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def hf_processed_row(row: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """HF's warper chain on one row, adding each warper only when active, as generate() does."""
    lp = pytest.importorskip("transformers.generation.logits_process")
    if temperature == 0:
        return row.clone()
    warpers = lp.LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(lp.TemperatureLogitsWarper(float(temperature)))
    if top_k > 0:
        warpers.append(lp.TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(lp.TopPLogitsWarper(top_p))
    return warpers(None, row.unsqueeze(0).clone())[0]


def ours(logits, combos):
    temperature = torch.tensor([c[0] for c in combos], dtype=torch.float32)
    top_k = torch.tensor([c[1] for c in combos], dtype=torch.long)
    top_p = torch.tensor([c[2] for c in combos], dtype=torch.float64)
    return processed_logits(logits, temperature, top_k, top_p)


def param_grid(vocab):
    temperatures = [0.0, 0.3, 1.0, 1.7]
    top_ks = [0, 1, 5, 37, vocab, vocab + 10]
    top_ps = [1.0, 0.999, 0.9, 0.5, 1e-6]
    return list(itertools.product(temperatures, top_ks, top_ps))


@pytest.mark.parametrize("vocab,scale", [(257, 1.0), (257, 6.0), (1000, 3.0)])
def test_processed_logits_matches_hf_row_by_row(vocab, scale):
    gen = torch.Generator().manual_seed(vocab)
    combos = param_grid(vocab)
    random.Random(vocab).shuffle(combos)  # mixed per-row parameters in one batch
    logits = torch.randn(len(combos), vocab, generator=gen) * scale
    got = ours(logits, combos)
    for i, (t, k, p) in enumerate(combos):
        want = hf_processed_row(logits[i], t, k, p)
        assert torch.equal(torch.isfinite(got[i]), torch.isfinite(want)), (t, k, p)
        kept = torch.isfinite(want)
        torch.testing.assert_close(got[i][kept], want[kept], rtol=0, atol=1e-6)


def test_processed_logits_matches_hf_with_tied_logits():
    vocab = 64
    gen = torch.Generator().manual_seed(1)
    combos = param_grid(vocab)
    # Few distinct values: many ties, including at the top-k and top-p boundaries.
    logits = torch.randint(-4, 5, (len(combos), vocab), generator=gen).float() * 0.5
    got = ours(logits, combos)
    for i, (t, k, p) in enumerate(combos):
        want = hf_processed_row(logits[i], t, k, p)
        got_kept, want_kept = torch.isfinite(got[i]), torch.isfinite(want)
        if p == 1.0 or t == 0:
            # Top-k's tie rule is value based: the pattern must match exactly.
            assert torch.equal(got_kept, want_kept), (t, k, p)
        else:
            # Top-p over ties depends on the sort order (HF's is unstable): the same number of
            # each value must survive, and only tokens tied with the smallest kept value may differ.
            assert torch.equal(got[i][got_kept].sort().values, want[want_kept].sort().values), (t, k, p)
            boundary = want[want_kept].min()
            off_boundary = logits[i] / t != boundary  # compare unmasked values: -inf hides ties
            assert torch.equal(got_kept[off_boundary], want_kept[off_boundary]), (t, k, p)
        scaled = hf_processed_row(logits[i], t, 0, 1.0)  # temperature only
        torch.testing.assert_close(got[i][got_kept], scaled[got_kept], rtol=0, atol=1e-6)


def test_top_p_ties_keep_lowest_id_like_greedy():
    logits = torch.tensor([[0.0, 2.0, 1.0, 2.0, 2.0, -1.0]])
    got = ours(logits, [(1.0, 0, 1e-6)])
    assert torch.isfinite(got[0]).tolist() == [False, True, False, False, False, False]
    got = ours(logits, [(1.0, 0, 0.5)])  # needs two of the three tied maxima
    assert torch.isfinite(got[0]).tolist() == [False, True, False, True, False, False]


def test_top_k_keeps_all_ties_at_kth_value():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0, 0.0]])
    got = ours(logits, [(1.0, 3, 1.0)])
    assert torch.isfinite(got[0]).tolist() == [False, True, True, True, True, False]


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_is_argmax_lowest_index_on_ties(device):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 500, generator=gen)
    logits[3, [7, 300]] = 50.0  # tie: lowest index wins
    logits[5] = 0.0  # all tied: token 0
    logits = logits.to(device)
    params = [SamplingParams(temperature=0.0, top_k=i % 4, top_p=0.5, seed=i) for i in range(16)]
    result = sample(logits, params, list(range(16)))
    assert torch.equal(result.token_ids, logits.argmax(dim=-1))
    assert result.token_ids[3].item() == 7 and result.token_ids[5].item() == 0


def seeded_row_token(device, logits_row, sp, position, others):
    """Token of the row (logits_row, sp, position) when batched with `others`, placed at a random slot."""
    rows = list(others)
    slot = random.Random(len(rows) + position).randint(0, len(rows))
    rows.insert(slot, (logits_row, sp, position))
    logits = torch.stack([r[0] for r in rows]).to(device)
    result = sample(logits, [r[1] for r in rows], [r[2] for r in rows],
                    generator=torch.Generator(device=device).manual_seed(len(rows)))
    return result.token_ids[slot].item()


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_rows_ignore_batch_composition(device):
    vocab = 2000
    gen = torch.Generator().manual_seed(3)
    flat = torch.randn(vocab, generator=gen) * 0.1  # near-uniform: any change of draw shows up
    pool = [
        (torch.randn(vocab, generator=gen), SamplingParams(temperature=t, top_k=k, top_p=p, seed=s), pos)
        for t, k, p, s, pos in [
            (0.0, 0, 1.0, None, 3), (1.0, 0, 1.0, None, 9), (0.7, 50, 0.9, 11, 4),
            (1.2, 0, 0.95, None, 100), (1.0, 10, 1.0, 5, 12), (0.5, 0, 1.0, 7, 7),
        ]
    ]
    for seed, position in [(0, 0), (42, 17), (2**63 + 5, 123456), (-1, 5)]:
        sp = SamplingParams(temperature=1.0, seed=seed)
        alone = seeded_row_token(device, flat, sp, position, [])
        for n in range(1, len(pool) + 1):
            others = random.Random(n).sample(pool, n)
            assert seeded_row_token(device, flat, sp, position, others) == alone


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_draws_differ_across_positions_and_seeds(device):
    vocab = 2000
    logits = torch.zeros(64, vocab, device=device)  # uniform: 64 independent draws rarely collide
    by_position = sample(logits, [SamplingParams(1.0, seed=9)] * 64, list(range(64))).token_ids
    by_seed = sample(logits, [SamplingParams(1.0, seed=s) for s in range(64)], [5] * 64).token_ids
    assert len(set(by_position.tolist())) > 55
    assert len(set(by_seed.tolist())) > 55
    again = sample(logits, [SamplingParams(1.0, seed=9)] * 64, list(range(64))).token_ids
    assert torch.equal(by_position, again)


def chi_square_critical(df: int, z: float = 3.72) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile at ~1e-4 upper tail (z = 3.72)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(counts: torch.Tensor, probs: torch.Tensor, n: int) -> float:
    """Pearson statistic; an observed token with zero expected probability makes it infinite."""
    expected = probs.double() * n
    if bool(((expected == 0) & (counts > 0)).any()):
        return math.inf
    support = expected > 0
    return float((((counts[support] - expected[support]) ** 2) / expected[support]).sum())


STAT_LOGITS = torch.tensor([2.0, 1.5, 1.4, 1.0, 0.7, 0.5, 0.2, 0.0, -0.3, -0.5, -1.0, -2.0])


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_sampling_matches_processed_distribution(device):
    n, vocab = 4000, STAT_LOGITS.numel()
    t, k, p = 0.8, 9, 0.8
    logits = STAT_LOGITS.to(device).expand(n, vocab)
    params = [SamplingParams(temperature=t, top_k=k, top_p=p, seed=s) for s in range(n)]
    tokens = sample(logits, params, [7] * n).token_ids.cpu()
    counts = torch.bincount(tokens, minlength=vocab).double()

    target = ours(STAT_LOGITS[None], [(t, k, p)])[0].softmax(-1)
    support = int((target > 0).sum())
    assert 2 < support < 9  # top-p really cuts below top-k here
    assert chi_square(counts, target, n) < chi_square_critical(support - 1)
    assert 0.5 * float((counts / n - target).abs().sum()) < 0.03
    # Power check: the same draws reject distributions that skip top-p or the temperature.
    ignore_top_p = ours(STAT_LOGITS[None], [(t, k, 1.0)])[0].softmax(-1)
    ignore_temperature = ours(STAT_LOGITS[None], [(1.0, k, p)])[0].softmax(-1)
    assert chi_square(counts, ignore_top_p, n) > chi_square_critical(vocab - 1)
    assert chi_square(counts, ignore_temperature, n) > chi_square_critical(vocab - 1)


@pytest.mark.parametrize("device", DEVICES)
def test_unseeded_sampling_matches_temperature_distribution(device):
    n, vocab, t = 4000, STAT_LOGITS.numel(), 1.6
    logits = STAT_LOGITS.to(device).expand(n, vocab)
    gen = torch.Generator(device=device).manual_seed(1234)
    tokens = sample(logits, [SamplingParams(temperature=t)] * n, [0] * n, generator=gen).token_ids.cpu()
    counts = torch.bincount(tokens, minlength=vocab).double()
    target = (STAT_LOGITS / t).softmax(-1)
    assert chi_square(counts, target, n) < chi_square_critical(vocab - 1)
    assert chi_square(counts, STAT_LOGITS.softmax(-1), n) > chi_square_critical(vocab - 1)


@pytest.mark.parametrize("device", DEVICES)
def test_logprobs_are_raw_log_softmax_at_token(device):
    gen = torch.Generator().manual_seed(5)
    logits = (torch.randn(6, 300, generator=gen) * 3).to(device)
    params = [
        SamplingParams(), SamplingParams(0.5, 5, 0.9, seed=1), SamplingParams(2.0),
        SamplingParams(1.0, 1, 1.0, seed=2), SamplingParams(0.9, 0, 0.3), SamplingParams(0.0, 3, 0.1),
    ]
    result = sample(logits, params, [10, 11, 12, 13, 14, 15], generator=torch.Generator(device=device))
    assert result.token_ids.dtype == torch.int64 and result.logprobs.dtype == torch.float32
    want = logits.float().log_softmax(-1).gather(-1, result.token_ids[:, None])[:, 0]
    torch.testing.assert_close(result.logprobs, want, rtol=0, atol=0)
    assert result.token_ids[3].item() == logits[3].argmax().item()  # top_k=1 forces the argmax


def test_empty_batch():
    result = sample(torch.empty(0, 10), [], [])
    assert result.token_ids.shape == (0,) and result.logprobs.shape == (0,)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"temperature": "1"}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": -0.5}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"top_p": math.nan}, "top_p"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_validate_names_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**kwargs).validate()


def test_validate_accepts_valid_params():
    for sp in [SamplingParams(), SamplingParams(0.7, 40, 0.95, seed=3), SamplingParams(2, 0, 1.0, seed=-4)]:
        sp.validate()


def test_greedy_pick_matches_argmax_and_log_softmax_with_ties_and_a_ragged_tail():
    """The two-level greedy reduction against torch's one-level argmax and log_softmax (fp64)."""
    from helix_core.sampling import greedy_tokens_and_logprobs

    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 5000, generator=gen) * 4  # 5000 = 4 pieces of 1024 and a ragged 904
    logits[1, 4500] = logits[1, 3000] = logits[1].max() + 1  # tie across pieces: the lower id wins
    logits[2, 10] = logits[2, 20] = logits[2].max() + 1  # tie inside one piece
    logits[3, 4999] = logits[3].max() + 1  # the maximum in the padded last piece
    for dtype in (torch.float32, torch.bfloat16):
        rows = logits.to(dtype)
        tokens, logprobs = greedy_tokens_and_logprobs(rows, chunk=1024)
        ref_tokens = rows.argmax(dim=-1)
        assert tokens.tolist() == ref_tokens.tolist() and tokens.tolist()[1:] == [3000, 10, 4999]
        ref = rows.double().log_softmax(dim=-1).gather(-1, ref_tokens[:, None]).squeeze(-1)
        assert torch.allclose(logprobs.double(), ref, atol=1e-5), (logprobs, ref)
    # a vocabulary that is a whole number of pieces, and one narrower than a piece
    for vocab in (2048, 300):
        rows = torch.randn(3, vocab, generator=gen)
        tokens, logprobs = greedy_tokens_and_logprobs(rows, chunk=1024)
        assert tokens.tolist() == rows.argmax(dim=-1).tolist()
        assert torch.allclose(logprobs, rows.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1), atol=1e-5)
