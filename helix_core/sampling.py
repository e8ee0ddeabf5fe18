"""Batched next-token sampling, run once per decode step on rank 0.

Every row of the batch carries its own SamplingParams. The logits processing reproduces
Hugging Face's TemperatureLogitsWarper -> TopKLogitsWarper -> TopPLogitsWarper chain
(min_tokens_to_keep=1, filter value -inf) with per-row parameters, entirely with tensor ops
on the logits' device. The engine broadcasts the chosen tokens to the other ranks.

Seeded rows are reproducible: the random draw of a row depends only on (seed, position, vocab
size, device type), never on which other requests share the batch or where the row sits in it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling knobs. temperature == 0 means greedy (top_k / top_p are then ignored)."""

    temperature: float = 0.0
    top_k: int = 0  # 0 = off; larger than the vocabulary = off
    top_p: float = 1.0  # 1.0 = off
    seed: int | None = None  # None = draw from the engine's generator (not reproducible)

    def validate(self) -> None:
        """Raise ValueError naming the offending field (the server maps it to INVALID_ARGUMENT)."""
        # bool is an int subclass; True as a temperature or top_k is almost surely a client bug.
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)):
            raise ValueError(f"temperature must be a number, got {self.temperature!r}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int):
            raise ValueError(f"top_k must be an integer, got {self.top_k!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k!r}")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)):
            raise ValueError(f"top_p must be a number, got {self.top_p!r}")
        if not 0.0 < self.top_p <= 1.0:  # also rejects nan
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer or unset, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class SampleResult(NamedTuple):
    token_ids: torch.Tensor  # int64 [B]
    logprobs: torch.Tensor  # float32 [B], log_softmax of the raw logits at token_ids


def processed_logits(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
) -> torch.Tensor:
    """Apply temperature, then top-k, then top-p to each row with that row's parameters.

    Matches HF's warper chain value for value: removed entries are -inf, kept entries are
    exactly ``logits / temperature``. top_k keeps every logit >= the k-th largest (ties kept);
    top_k == 0 or > V is off. top_p == 1.0 is off (HF does not add the warper then, so tokens
    whose probability underflows to 0 are kept too). Rows with temperature == 0 are greedy and
    come back unchanged.

    Pass top_p as float64 to get HF's threshold bit for bit: HF computes ``1 - top_p`` on the
    Python double and only then rounds it to the logits' dtype.

    Where logits tied at the top-p boundary straddle it, the higher token ids are dropped first,
    so a tiny top_p keeps the greedy token; HF leaves that choice to its unstable sort, so only
    such tied tokens may differ from it.
    """
    logits = logits.float()
    vocab = logits.shape[-1]
    sampled = temperature > 0
    # Greedy rows pass through untouched: divide by 1, no top-k, no top-p.
    temp = torch.where(sampled, temperature, torch.ones_like(temperature)).to(logits.dtype)
    scaled = logits / temp.unsqueeze(-1)

    # One ascending sort serves both filters. Entries top-k removes are exactly a prefix of
    # this order, so after masking them the sorted row equals what HF's own sort of the
    # top-k-masked row would give, and the top-p cumsum is bit-identical. Stable descending
    # then flipped: equal values sit in decreasing id order, so top-p drops higher ids first.
    sorted_desc, idx_desc = torch.sort(scaled, dim=-1, descending=True, stable=True)
    sorted_vals, sorted_idx = sorted_desc.flip(-1), idx_desc.flip(-1)

    k = top_k.to(device=logits.device, dtype=torch.long)
    k = torch.where(sampled & (k > 0), k.clamp(max=vocab), torch.full_like(k, vocab))
    kth_largest = sorted_vals.gather(-1, (vocab - k).unsqueeze(-1))
    remove_sorted = sorted_vals < kth_largest
    sorted_vals = sorted_vals.masked_fill(remove_sorted, float("-inf"))

    p = top_p.to(device=logits.device)
    top_p_on = sampled & (p < 1.0)
    threshold = (1.0 - p.double()).to(logits.dtype).unsqueeze(-1)
    cum_probs = sorted_vals.softmax(dim=-1).cumsum(dim=-1)
    remove_top_p = (cum_probs <= threshold) & top_p_on.unsqueeze(-1)
    remove_top_p[..., -1] = False  # min_tokens_to_keep = 1: the largest logit always survives
    remove_sorted |= remove_top_p

    remove = torch.empty_like(remove_sorted).scatter_(-1, sorted_idx, remove_sorted)
    return scaled.masked_fill(remove, float("-inf"))


def sample(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    positions: Sequence[int],
    *,
    generator: torch.Generator | None = None,
) -> SampleResult:
    """Pick one token per row of ``logits`` [B, V].

    Greedy rows (temperature 0) take the argmax of the raw logits, lowest token id on ties.
    Other rows sample from softmax(processed_logits(...)) by an exponential race:
    argmax(probs / E) with E ~ Exp(1) i.i.d. per token picks token i with probability probs[i].
    E comes from a generator seeded with mix(seed, position) for seeded rows, so their draw
    depends only on (seed, position) (for a given vocab size and device type); unseeded rows
    draw from ``generator`` (or torch's global one on the logits' device).

    ``positions[i]`` is the sequence position of the token being generated for row i.

    The returned logprobs are log_softmax of the *raw* logits at the chosen token: they score
    the token under the model's own distribution, independent of the request's sampling knobs,
    so they are comparable across requests and defined for greedy rows too.
    """
    batch, vocab = logits.shape
    if len(params) != batch or len(positions) != batch:
        raise ValueError(f"got {len(params)} params and {len(positions)} positions for {batch} rows")
    device = logits.device
    logits = logits.float()

    token_ids = logits.argmax(dim=-1)  # first maximum on ties: deterministic greedy
    sampled_rows = [i for i, sp in enumerate(params) if not sp.greedy]
    if sampled_rows:
        temperature = torch.tensor([sp.temperature for sp in params], dtype=torch.float32)
        top_k = torch.tensor([sp.top_k for sp in params], dtype=torch.long)
        top_p = torch.tensor([sp.top_p for sp in params], dtype=torch.float64)
        probs = processed_logits(
            logits, temperature.to(device), top_k.to(device), top_p.to(device)
        ).softmax(dim=-1)

        noise = torch.ones_like(logits)  # greedy rows: unused, any positive value will do
        unseeded = [i for i in sampled_rows if params[i].seed is None]
        if unseeded:
            rows = torch.tensor(unseeded, device=device)
            noise[rows] = torch.empty((len(unseeded), vocab), device=device).exponential_(
                generator=generator
            )
        for i in sampled_rows:
            seed = params[i].seed
            if seed is not None:
                row_gen = torch.Generator(device=device)
                row_gen.manual_seed(_mix_seed(seed, positions[i]))
                noise[i].exponential_(generator=row_gen)
        # Exp(1) can round to 0 in float32; 0/0 would be nan and win the argmax.
        noise.clamp_(min=torch.finfo(noise.dtype).tiny)
        raced = (probs / noise).argmax(dim=-1)
        is_sampled = torch.zeros(batch, dtype=torch.bool)
        is_sampled[sampled_rows] = True
        token_ids = torch.where(is_sampled.to(device), raced, token_ids)

    logprobs = logits.log_softmax(dim=-1).gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)
    return SampleResult(token_ids=token_ids, logprobs=logprobs)


GREEDY_CHUNK = 1024  # vocab entries a row of the first reduction level


def greedy_tokens_and_logprobs(logits: torch.Tensor, chunk: int = GREEDY_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmax, log_softmax at the argmax) of each row of ``logits`` [B, V]: the greedy pick, lowest
    token id on ties, and its logprob, as ``sample`` computes them for greedy rows.

    Two-level reductions: a [B, V] reduction runs B programs, so at batch 1 one program walks the
    whole vocabulary (H200, 128K vocab: about 28 us each for torch's argmax and log_softmax); the
    rows are cut into ``chunk``-wide pieces (the tail padded with -inf), reduced in parallel, then
    across pieces. The first maximal piece holds the first maximal entry, so ties still go to the
    lowest id; the logprob is logit - (max + log(sum(exp(logit - max)))) in fp32."""
    batch, vocab = logits.shape
    pieces = -(-vocab // chunk)
    rows = logits.float()
    if pieces * chunk != vocab:
        rows = torch.nn.functional.pad(rows, (0, pieces * chunk - vocab), value=float("-inf"))
    rows = rows.view(batch, pieces, chunk)
    index_in_piece = rows.argmax(dim=-1)  # [B, pieces], first maximum of each piece
    piece_max = rows.gather(-1, index_in_piece.unsqueeze(-1)).squeeze(-1)
    best_piece = piece_max.argmax(dim=-1)  # first piece holding the row's maximum
    tokens = best_piece * chunk + index_in_piece.gather(-1, best_piece.unsqueeze(-1)).squeeze(-1)
    peak = piece_max.gather(-1, best_piece.unsqueeze(-1))  # [B, 1]
    total = (rows - peak.unsqueeze(-1)).exp().sum(dim=-1).sum(dim=-1)
    logprobs = -torch.log(total)  # the chosen logit is the peak: logit - peak = 0
    return tokens, logprobs


def _splitmix64(x: int) -> int:
    """One step of splitmix64: a fixed, well-mixed 64-bit bijection (unlike Python's hash)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _mix_seed(seed: int, position: int) -> int:
    """Generator seed for (request seed, position); nearby seeds/positions give unrelated streams."""
    return _splitmix64(_splitmix64(seed & _MASK64) ^ (position & _MASK64))
