"""The small-batch linear kernel (Triton: compiled on a GPU, else its CPU interpreter) against a
float64 matmul."""
import pytest
import torch
from triton_interpreter import kernel_test_module

# module fixtures and the fresh-process rerun, collected by pytest under these names
(DEVICE, NEEDS_FRESH_PROCESS, _interpreter_while_these_tests_run, _needs_interpreter,
 test_rerun_in_fresh_interpreter) = kernel_test_module(__file__, "the small-batch linear kernel")

from helix_core.kernels.small_linear import (LinearConfig, gated_linear, merge_linear, norm_linear,  # noqa: E402
                                            prefetch_after, small_linear, usable)

CASES = [
    # rows, K, N, config: one row and several; whole and ragged tiles; one split and several
    (1, 512, 64, LinearConfig(block_n=16, block_k=128, splits=1)),
    (1, 512, 64, LinearConfig(block_n=16, block_k=128, splits=4)),
    (1, 300, 50, LinearConfig(block_n=16, block_k=64, splits=2)),  # ragged N and K
    (3, 512, 64, LinearConfig(block_n=16, block_k=128, splits=1)),
    (16, 384, 48, LinearConfig(block_n=16, block_k=64, splits=3)),
    (5, 200, 40, LinearConfig(block_n=32, block_k=64, splits=0)),  # splits chosen from the SM count
    (1, 1024, 40, LinearConfig()),  # the engine's one-row config
    (1, 1000, 40, LinearConfig(block_n=8, block_k=128, ahead=True)),  # each tile loaded a tile early, ragged K
    (1, 1000, 40, LinearConfig(block_n=8, block_k=128, ahead=False)),
    (1, 512, 64, LinearConfig(block_n=16, block_k=128, splits=2, ahead=True)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows,k,n,config", CASES)
def test_matches_a_float64_matmul(rows, k, n, config, dtype):
    gen = torch.Generator().manual_seed(rows * 1000 + k + n)
    x = torch.randn(rows, k, generator=gen).to(dtype).to(DEVICE)
    w = torch.randn(n, k, generator=gen).to(dtype).to(DEVICE)
    y = small_linear(x, w, config)
    ref = x.double() @ w.double().T
    assert y.shape == (rows, n) and y.dtype == dtype
    # fp32 accumulation (tf32-free); the only rounding beyond it is the store in the output dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    err = ((y.double() - ref).abs() / (ref.abs() + 1.0)).max().item()
    assert err < tol, err


def test_refuses_what_it_cannot_run():
    x = torch.randn(17, 64, device=DEVICE)
    w = torch.randn(32, 64, device=DEVICE)
    assert not usable(x, w)  # a GEMM, not a decode batch
    assert not usable(x[:2].to(torch.bfloat16), w)  # mixed dtypes
    with pytest.raises(ValueError, match="do not fit"):
        small_linear(x, w)


def _close(y, ref, dtype):
    """fp32 accumulation; the output is rounded to its dtype, and a fused input value may round the
    other way than the reference's (fp32 sums in another order): relative to |ref| + 1."""
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    return ((y.double() - ref).abs() / (ref.abs() + 1.0)).max().item() < tol


FUSED_CASES = [
    # K, N, config: whole tiles, ragged tiles, several K splits, the engine's one-row config
    (512, 64, LinearConfig(block_n=16, block_k=128, splits=1)),
    (300, 50, LinearConfig(block_n=16, block_k=64, splits=2)),
    (512, 64, LinearConfig(block_n=16, block_k=128, splits=4)),
    (1024, 40, LinearConfig()),
    (300, 50, LinearConfig(block_n=16, block_k=64, splits=2, ahead=True)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("k,n,config", FUSED_CASES)
def test_gated_input_matches_the_hf_mlp(k, n, config, dtype):
    """The down projection of Hugging Face's gated MLP: act_fn(gate) * up in the model's dtype."""
    gen = torch.Generator().manual_seed(k + n)
    gate_up = (2 * torch.randn(1, 2 * k, generator=gen)).to(dtype)
    w = torch.randn(n, k, generator=gen).to(dtype)
    y = gated_linear(gate_up.to(DEVICE), w.to(DEVICE), config)
    gate, up = gate_up.chunk(2, dim=-1)
    hidden = torch.nn.functional.silu(gate) * up  # eager CPU, in dtype: what HF computes
    ref = hidden.double() @ w.double().T
    assert y.shape == (1, n) and y.dtype == dtype
    assert _close(y.cpu(), ref, dtype)


@pytest.mark.parametrize("with_delta", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("k,n,config", FUSED_CASES)
def test_norm_input_matches_hf_rmsnorm(k, n, config, dtype, with_delta):
    """The residual add, then Hugging Face's LlamaRMSNorm, then the projection; the residual comes
    back too."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    gen = torch.Generator().manual_seed(7 * k + n)
    x = (3 * torch.randn(1, k, generator=gen)).to(dtype)
    delta = torch.randn(1, k, generator=gen).to(dtype) if with_delta else None
    norm = LlamaRMSNorm(k, eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.copy_((1 + 0.3 * torch.randn(k, generator=gen)).to(dtype))
    w = torch.randn(n, k, generator=gen).to(dtype)
    total, y = norm_linear(x.to(DEVICE), None if delta is None else delta.to(DEVICE),
                           norm.weight.detach().to(DEVICE), 1e-5, w.to(DEVICE), config)
    ref_total = x if delta is None else x + delta
    with torch.no_grad():
        ref = norm(ref_total).double() @ w.double().T
    assert torch.equal(total.cpu(), ref_total)  # the residual stream is stored exactly
    assert y.shape == (1, n) and y.dtype == dtype
    assert _close(y.cpu(), ref, dtype)


def test_fused_inputs_take_one_row_only():
    w = torch.randn(32, 64, device=DEVICE)
    with pytest.raises(ValueError, match="do not fit"):
        gated_linear(torch.randn(2, 128, device=DEVICE), w)
    with pytest.raises(ValueError, match="do not fit"):
        gated_linear(torch.randn(1, 64, device=DEVICE), w)  # not [gate | up]
    with pytest.raises(ValueError, match="do not fit"):
        norm_linear(torch.randn(2, 64, device=DEVICE), None, torch.ones(64, device=DEVICE), 1e-5, w)


def test_batch_one_steps_fuse_the_norms_and_the_gate_into_the_projections(monkeypatch):
    """One rank in this process, so spies see the kernel calls: at batch 1 every Llama layer's two
    norms and its SiLU gate run inside the projection kernels (fp32; without CUDA graphs, whose
    replays would not call the spies), and the tokens and logits still match HF's."""
    from collections import Counter

    import helix_core.kernels.small_linear as small_linear
    from helix_core.comm import Comm
    from helix_core.engine import Engine, EngineOptions, PrefillItem
    from helix_core.plan import Plan
    from helix_core.verify import hf_logits

    from engine_fixtures import PROMPTS, hf_model, model_dir

    calls = Counter()
    for name in ("norm_linear", "gated_linear"):
        def spy(*args, _real=getattr(small_linear, name), _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(small_linear, name, spy)
    plan, device = Plan.helix(1, 1), torch.device(DEVICE)
    options = EngineOptions(page_size=8, stage_size=16, prefill_chunk=16, fast_decode="on", decode_kernel="on",
                            small_linear="on", max_batch=4, cuda_graphs=False)
    engine = Engine(model_dir("llama"), plan, 0, Comm(plan, 0, device), device, options)
    prompt, steps = PROMPTS[2], 4
    outs = engine.prefill([PrefillItem(0, prompt)], return_logits=True)
    assert calls["norm_linear"] == 0  # a prompt's many rows are a GEMM, not fused
    for _ in range(steps):
        outs += engine.decode([0], return_logits=True)
    layers = engine.cfg.num_layers
    assert calls == {"norm_linear": 2 * layers * steps, "gated_linear": layers * steps}
    tokens = [out.token_id for out in outs]
    reference = hf_logits(hf_model("llama"), prompt + tokens)
    for i, out in enumerate(outs):
        ref = reference[len(prompt) - 1 + i]
        assert out.token_id == int(ref.argmax())
        assert float((out.logits - ref).abs().max()) < 1e-4


def test_norm_statistics_in_several_steps_match_one(monkeypatch):
    """The norm's statistics read NORM_BLOCK row values a step: a row wider than the step (several steps,
    a ragged last one) gives the result of one step over the whole row, within rounding."""
    from helix_core.kernels import small_linear as sl

    assert (sl.norm_block(4096), sl.norm_block(7168), sl.norm_block(300), sl.norm_block(1)) == (2048, 2048, 512, 1)
    gen = torch.Generator().manual_seed(11)
    x = (3 * torch.randn(1, 300, generator=gen)).to(DEVICE)
    delta = torch.randn(1, 300, generator=gen).to(DEVICE)
    weight = (1 + 0.3 * torch.randn(300, generator=gen)).to(DEVICE)
    w = torch.randn(40, 300, generator=gen).to(DEVICE)
    config = LinearConfig(block_n=8, block_k=64, splits=1)
    one_total, one_step = norm_linear(x, delta, weight, 1e-5, w, config)  # one 512-wide step
    monkeypatch.setattr(sl, "NORM_BLOCK_MAX", 64)
    assert sl.norm_block(300) == 64
    total, steps = norm_linear(x, delta, weight, 1e-5, w, config)  # five steps, the last of 44 values
    assert torch.equal(total, one_total)
    ref = (x + delta) * torch.rsqrt(((x + delta) ** 2).mean() + 1e-5) * weight @ w.T
    assert torch.allclose(steps, one_step, rtol=1e-5, atol=1e-4) and torch.allclose(steps, ref, rtol=1e-4, atol=1e-3)


MERGE_CASES = [
    # parts, heads, Dv, N, config: tiles within a head, tiles across heads with ragged ends and K splits,
    # four parts, the engine's one-row config, each tile loaded a tile early
    (2, 4, 128, 64, LinearConfig(block_n=16, block_k=128, splits=1)),
    (2, 3, 100, 40, LinearConfig(block_n=8, block_k=64, splits=2)),
    (4, 4, 64, 48, LinearConfig(block_n=16, block_k=128, splits=1)),
    (2, 8, 128, 40, LinearConfig()),
    (2, 4, 64, 32, LinearConfig(block_n=8, block_k=128, ahead=True)),
]


def _partials(parts: int, heads: int, dv: int, seed: int, gather_view: bool):
    """KVP partials as the exchange delivers them: recv [parts, 1, heads, Dv + 1] fp32 (outputs, then the
    natural-log LSE). Part 1 of head 0 saw no keys (LSE -inf; its outputs are NaN and must not count).
    gather_view: a view into a gather exchange's summed slot buffer [1, parts, 2 * heads, Dv + 1], as
    GatherExchange.exchange returns it (this rank's heads are the second half)."""
    gen = torch.Generator().manual_seed(seed)
    recv = torch.empty(parts, 1, heads, dv + 1)
    recv[..., :dv] = torch.randn(parts, 1, heads, dv, generator=gen)
    recv[..., dv] = 4 * torch.randn(parts, 1, heads, generator=gen)
    recv[1, 0, 0, :dv] = float("nan")
    recv[1, 0, 0, dv] = float("-inf")
    if not gather_view:
        return recv
    slots = torch.zeros(1, parts, 2 * heads, dv + 1)
    slots[:, :, heads:] = recv.transpose(0, 1)
    return slots[:, :, heads:].transpose(0, 1)


def _reference_merge(recv: torch.Tensor) -> torch.Tensor:
    """exact attention [1, H * Dv] in float64 from its parts: sum_p exp(lse_p - logsumexp(lse)) out_p."""
    dv = recv.shape[-1] - 1
    out, lse = recv[..., :dv].double(), recv[..., dv].double()
    weights = torch.exp(lse - torch.logsumexp(lse, dim=0))  # a part with LSE -inf weighs 0
    merged = torch.where(weights[..., None] > 0, weights[..., None] * out, torch.zeros_like(out)).sum(dim=0)
    return merged.reshape(1, -1)


@pytest.mark.parametrize("gather_view", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("parts,heads,dv,n,config", MERGE_CASES)
def test_merge_input_matches_the_merged_attention_projected(parts, heads, dv, n, config, dtype, gather_view):
    """The o projection of the exchange's partials: the exact merge (float64 reference) rounded to the
    model's dtype, as the merge kernel stores it for the model, then projected."""
    recv = _partials(parts, heads, dv, seed=parts * 100 + heads + dv, gather_view=gather_view)
    w = torch.randn(n, heads * dv, generator=torch.Generator().manual_seed(n)).to(dtype)
    y = merge_linear(recv.to(DEVICE), w.to(DEVICE), config)
    ref = _reference_merge(recv).to(dtype).double() @ w.double().T
    assert y.shape == (1, n) and y.dtype == dtype
    assert not torch.isnan(y).any()
    assert _close(y.cpu(), ref, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_two_part_merge_input_is_the_merge_kernel_then_the_projection_bitwise(dtype):
    """With two parts (KVP = 2) the fused input is the Triton merge's value bit for bit (the same fp32
    operations in the same order), so folding the merge into the projection changes no bit of its output."""
    from helix_core.kernels.split_merge import merge_partials

    recv = _partials(2, 8, 128, seed=5, gather_view=True).to(DEVICE)
    w = torch.randn(96, 8 * 128, generator=torch.Generator().manual_seed(3)).to(dtype).to(DEVICE)
    merged = merge_partials(recv[..., :128], recv[..., 128], out_dtype=torch.float32)
    unfused = small_linear(merged.reshape(1, -1).to(dtype), w)  # torch's cast: round to nearest even
    assert torch.equal(merge_linear(recv, w), unfused)


def test_merge_input_refuses_what_it_cannot_run():
    w = torch.randn(32, 4 * 64, device=DEVICE)
    with pytest.raises(ValueError, match="do not fit"):
        merge_linear(torch.randn(2, 2, 4, 65, device=DEVICE), w)  # two rows
    with pytest.raises(ValueError, match="do not fit"):
        merge_linear(torch.randn(2, 1, 4, 64, device=DEVICE), w)  # no LSE channel: K is not heads x Dv
    with pytest.raises(ValueError, match="do not fit"):
        merge_linear(torch.randn(2, 1, 4, 65, device=DEVICE).to(torch.bfloat16), w)  # partials are fp32


def test_l2_prefetch_pieces_cover_the_asked_bytes_once():
    """The one-row kernel's L2 prefetch (inline PTX: compiled on sm_90 only, see test_kernel_sm90.py)
    splits the asked bytes over programs and threads: run here, its pieces tile [0, bytes) exactly, each
    on 16 bytes, with any past the end empty."""
    record = _recorded_prefetch_pieces()
    for nbytes, programs in ((24 << 20, 512), (16 * 1000, 7), (16, 3), (48 << 20, 1792)):
        starts = torch.zeros(programs * 128, dtype=torch.int64, device=DEVICE)
        sizes = torch.zeros(programs * 128, dtype=torch.int32, device=DEVICE)
        record[(programs,)](starts, sizes, nbytes, THREADS=128)
        starts, sizes = starts.cpu(), sizes.cpu().long()
        live = sizes > 0
        assert bool((starts % 16 == 0).all()) and bool((sizes % 16 == 0).all())
        order = torch.argsort(starts[live])
        begin, length = starts[live][order], sizes[live][order]
        assert int(begin[0]) == 0 and int(begin[-1] + length[-1]) == nbytes
        assert torch.equal(begin[1:], begin[:-1] + length[:-1])  # no gap, no overlap


def _recorded_prefetch_pieces():
    """A kernel that stores _prefetch_pieces' (start, size) of every program and thread (a Triton kernel
    finds the functions it calls among its module's globals, hence this one's)."""
    import triton
    import triton.language as tl

    from helix_core.kernels import kernel_module

    globals()["_prefetch_pieces"] = kernel_module("_triton_common").prefetch_pieces

    @triton.jit
    def record(starts, sizes, prefetch_bytes, THREADS: tl.constexpr):
        program = tl.program_id(0)
        start, size = _prefetch_pieces(prefetch_bytes, program, tl.num_programs(0), THREADS)  # noqa: F821
        tl.store(starts + program * THREADS + tl.arange(0, THREADS), start)
        tl.store(sizes + program * THREADS + tl.arange(0, THREADS), size)

    return record


def test_prefetch_pairs_name_the_projection_read_after_each_all_reduce(monkeypatch):
    """The model's (projection, next projection) pairs for the L2 prefetch, against the order a batch-1
    decode step really runs: spies record each projection's weight (the one-row kernel, and F.linear for
    the LM head) and each all-reduce; after every all-reduce but the embedding's, the projection read
    next is the one paired with the projection read before it, and every pair is used once."""
    import torch.nn.functional as F

    import helix_core.kernels.small_linear as small_linear
    from helix_core.comm import Comm
    from helix_core.engine import Engine, EngineOptions, PrefillItem
    from helix_core.plan import Plan

    from engine_fixtures import PROMPTS, model_dir

    events = []
    real_launch, real_linear, real_all_reduce = small_linear._launch_one_row, F.linear, Comm.all_reduce

    def launch(a, b, norm, w, *args, **kwargs):
        events.append(w)
        return real_launch(a, b, norm, w, *args, **kwargs)

    def linear(x, w, *args, **kwargs):
        events.append(w)
        return real_linear(x, w, *args, **kwargs)

    def all_reduce(self, x, *args, **kwargs):
        events.append("all_reduce")
        return real_all_reduce(self, x, *args, **kwargs)

    plan, device = Plan.helix(1, 1), torch.device(DEVICE)
    options = EngineOptions(page_size=8, stage_size=16, prefill_chunk=16, fast_decode="on", decode_kernel="off",
                            small_linear="on", max_batch=4, cuda_graphs=False)
    engine = Engine(model_dir("llama"), plan, 0, Comm(plan, 0, device), device, options)
    engine.prefill([PrefillItem(0, PROMPTS[2])])
    monkeypatch.setattr(small_linear, "_launch_one_row", launch)
    monkeypatch.setattr(F, "linear", linear)
    monkeypatch.setattr(Comm, "all_reduce", all_reduce)
    engine.decode([0])
    pairs = {id(before): after for before, after in engine.model.collective_successors()}
    marks = [i for i, event in enumerate(events) if isinstance(event, str)]
    assert len(marks) == 1 + 2 * engine.cfg.num_layers  # the embedding's, then two a layer
    used = []
    for mark in marks[1:]:
        before, after = events[mark - 1], events[mark + 1]
        assert not isinstance(before, str) and not isinstance(after, str)
        assert pairs[id(before)] is after
        used.append(id(before))
    assert sorted(used) == sorted(pairs)


def test_projections_ending_with_an_l2_prefetch_give_the_same_result():
    """A weight registered with prefetch_after: its one-row projections end with an L2 prefetch where that
    compiles (an sm_90+ GPU; elsewhere the hint is dropped), and every input mode gives the same bits as
    without it. A target that is not one contiguous block is not registered."""
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(48, 512, generator=gen).to(torch.bfloat16).to(DEVICE)
    x = torch.randn(1, 512, generator=gen).to(torch.bfloat16).to(DEVICE)
    norm = (1 + 0.1 * torch.randn(512, generator=gen)).to(torch.bfloat16).to(DEVICE)
    recv = _partials(2, 4, 128, seed=9, gather_view=False).to(DEVICE)
    target = torch.randn(1 << 16, device=DEVICE)

    def every_mode():
        return (small_linear(x, w), norm_linear(x, x, norm, 1e-5, w)[1], merge_linear(recv, w),
                gated_linear(torch.cat([x, x], dim=1), w))

    plain = every_mode()
    assert prefetch_after(w, target, 100_000)
    fetched = every_mode()
    assert prefetch_after(w, None) is False
    assert all(torch.equal(a, b) for a, b in zip(plain, fetched))
    assert not prefetch_after(w, target.view(256, 256)[:, :128], 1024)  # strided: refused, nothing registered
    assert not hasattr(w, "_helix_l2_prefetch")
