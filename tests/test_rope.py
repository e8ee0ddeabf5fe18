"""RoPE against the transformers rotary-embedding classes it must reproduce."""
import math

import pytest
import torch

from helix_core.config import ModelConfig
from helix_core.rope import (
    apply_rope,
    deinterleave_rope_dims,
    mla_softmax_scale,
    rope_cos_sin,
    rope_inv_freq,
)

transformers = pytest.importorskip("transformers")
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as hf_deepseek  # noqa: E402
from transformers.models.llama import modeling_llama as hf_llama  # noqa: E402

# Up to a million tokens: at such positions one ulp of inv_freq already moves the angle visibly.
POSITIONS = torch.cat([torch.arange(64), torch.tensor([255, 1000, 4095, 4096, 65535, 163839, 1_000_000])])

LLAMA_ROPES = {
    "default": (16, 256, dict(rope_type="default", rope_theta=10000.0)),
    "default-llama2": (128, 4096, dict(rope_type="default", rope_theta=10000.0)),
    "linear": (16, 256, dict(rope_type="linear", rope_theta=10000.0, factor=4.0)),
    "llama3-tiny": (
        16,
        256,
        dict(
            rope_type="llama3",
            rope_theta=10000.0,
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=64,
        ),
    ),
    "llama3.1-8b": (
        128,
        131072,
        dict(
            rope_type="llama3",
            rope_theta=500000.0,
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=8192,
        ),
    ),
    "yarn-qwen-style": (
        128,
        131072,
        dict(rope_type="yarn", rope_theta=1000000.0, factor=4.0, original_max_position_embeddings=32768),
    ),
}

DEEPSEEK_YARN = dict(rope_type="yarn", rope_theta=10000.0, beta_fast=32, beta_slow=1)
V3_YARN = dict(DEEPSEEK_YARN, factor=40.0, original_max_position_embeddings=4096)
DEEPSEEK_ROPES = {
    # (qk_rope_head_dim, max_position_embeddings, rope_parameters)
    "tiny": (
        8,
        512,
        dict(DEEPSEEK_YARN, factor=4.0, original_max_position_embeddings=128, mscale=1.0, mscale_all_dim=1.0),
    ),
    "deepseek-v3": (
        64,
        163840,
        dict(V3_YARN, mscale=1.0, mscale_all_dim=1.0),
    ),
    "mscale-ratio": (
        64,
        163840,
        dict(V3_YARN, mscale=1.0, mscale_all_dim=0.707),
    ),
    "factor-only": (64, 163840, dict(rope_type="yarn", factor=40.0, original_max_position_embeddings=4096)),
    "explicit-attention-factor-no-truncate": (
        64,
        16384,
        dict(V3_YARN, factor=4.0, attention_factor=1.25, truncate=False),
    ),
    # Left out by the config, the factor is max_position_embeddings / original_max_position_embeddings.
    "derived-factor": (8, 512, dict(DEEPSEEK_YARN, factor=None, original_max_position_embeddings=128)),
    "no-yarn": (64, 4096, dict(rope_type="default", rope_theta=10000.0)),
}


def _llama_config(head_dim, max_pos, rope_parameters):
    return transformers.LlamaConfig(
        vocab_size=32,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
        intermediate_size=64,
        max_position_embeddings=max_pos,
        rope_parameters=dict(rope_parameters),
    )


def _deepseek_config(rope_dim, max_pos, rope_parameters):
    return transformers.DeepseekV3Config(
        vocab_size=32,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=16,
        kv_lora_rank=16,
        qk_nope_head_dim=16,
        qk_rope_head_dim=rope_dim,
        v_head_dim=16,
        intermediate_size=64,
        n_routed_experts=4,
        n_group=1,
        topk_group=1,
        max_position_embeddings=max_pos,
        rope_parameters=dict(rope_parameters),
    )


def _hf_cos_sin(rotary, positions):
    x = torch.zeros(1, dtype=torch.float32)
    cos, sin = rotary(x, positions[None])
    return cos[0], sin[0]


def _assert_matches_hf(hf_config, rotary_class):
    rotary = rotary_class(hf_config)
    ours = ModelConfig.from_dict(hf_config.to_dict())
    inv_freq, scaling = rope_inv_freq(ours.rope)
    assert inv_freq.dtype == torch.float32
    assert torch.equal(inv_freq, rotary.inv_freq)
    assert scaling == pytest.approx(rotary.attention_scaling, rel=1e-12)
    cos, sin = rope_cos_sin(inv_freq, scaling, POSITIONS)
    hf_cos, hf_sin = _hf_cos_sin(rotary, POSITIONS)
    assert cos.shape == (len(POSITIONS), 2 * len(inv_freq)) and cos.dtype == torch.float32
    torch.testing.assert_close(cos, hf_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, hf_sin, atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", LLAMA_ROPES)
def test_llama_rope_matches_hf(case):
    _assert_matches_hf(_llama_config(*LLAMA_ROPES[case]), hf_llama.LlamaRotaryEmbedding)


@pytest.mark.parametrize("case", DEEPSEEK_ROPES)
def test_deepseek_rope_matches_hf(case):
    _assert_matches_hf(_deepseek_config(*DEEPSEEK_ROPES[case]), hf_deepseek.DeepseekV3RotaryEmbedding)


# HF's own scale needs an explicit factor: it fails on the derived-factor config.
@pytest.mark.parametrize("case", [c for c in DEEPSEEK_ROPES if c != "derived-factor"])
def test_mla_softmax_scale_matches_hf(case):
    hf_config = _deepseek_config(*DEEPSEEK_ROPES[case])
    attention = hf_deepseek.DeepseekV3Attention(hf_config, layer_idx=0)
    ours = mla_softmax_scale(ModelConfig.from_dict(hf_config.to_dict()))
    assert ours == pytest.approx(attention.scaling, rel=1e-12)


def test_mla_softmax_scale_deepseek_v3_value():
    config = ModelConfig.from_dict(_deepseek_config(*DEEPSEEK_ROPES["deepseek-v3"]).to_dict())
    mscale = 0.1 * math.log(40.0) + 1.0
    assert mla_softmax_scale(config) == pytest.approx((16 + 64) ** -0.5 * mscale**2, rel=1e-12)


def test_mla_softmax_scale_refuses_gqa_models():
    with pytest.raises(ValueError, match="MLA"):
        mla_softmax_scale(ModelConfig.from_dict(_llama_config(*LLAMA_ROPES["default"]).to_dict()))


def _tokens_heads_dim(generator, tokens=7, heads=3, dim=16, dtype=torch.float32):
    return torch.randn(tokens, heads, dim, generator=generator).to(dtype)


def test_apply_rope_matches_hf_rotate_half():
    generator = torch.Generator().manual_seed(0)
    rotary = hf_llama.LlamaRotaryEmbedding(_llama_config(*LLAMA_ROPES["llama3-tiny"]))
    positions = torch.tensor([0, 3, 17, 63, 64, 200, 100_000])
    x = _tokens_heads_dim(generator)
    cos, sin = rope_cos_sin(*rope_inv_freq(ModelConfig.from_dict(rotary.config.to_dict()).rope), positions)
    ours = apply_rope(x, cos, sin)
    hf_cos, hf_sin = _hf_cos_sin(rotary, positions)
    q = x.transpose(0, 1)[None]  # HF layout [batch, heads, tokens, dim]
    hf_q, _ = hf_llama.apply_rotary_pos_emb(q, q, hf_cos[None], hf_sin[None])
    torch.testing.assert_close(ours, hf_q[0].transpose(0, 1), atol=1e-6, rtol=0)


def test_apply_rope_computes_in_fp32_and_keeps_dtype():
    generator = torch.Generator().manual_seed(1)
    x = _tokens_heads_dim(generator, dtype=torch.bfloat16)
    rope = ModelConfig.from_dict(_llama_config(*LLAMA_ROPES["default"]).to_dict()).rope
    cos, sin = rope_cos_sin(*rope_inv_freq(rope), torch.arange(7) * 1000)
    out = apply_rope(x, cos, sin)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, apply_rope(x.float(), cos, sin).to(torch.bfloat16))


@pytest.mark.parametrize("start, stop", [(0, 8), (0, 4), (4, 8), (2, 5), (6, 7)])
def test_sub_range_of_frequencies_rotates_the_matching_dims(start, stop):
    generator = torch.Generator().manual_seed(2)
    dim = 16
    inv_freq, scaling = rope_inv_freq(
        ModelConfig.from_dict(_llama_config(dim, 256, LLAMA_ROPES["llama3-tiny"][2]).to_dict()).rope
    )
    positions = torch.tensor([0, 1, 5, 63, 4097, 1_000_000])
    cos, sin = rope_cos_sin(inv_freq, scaling, positions)
    sub_cos, sub_sin = rope_cos_sin(inv_freq[start:stop], scaling, positions)
    dims = torch.cat([torch.arange(start, stop), dim // 2 + torch.arange(start, stop)])
    assert torch.equal(sub_cos, cos[:, dims]) and torch.equal(sub_sin, sin[:, dims])

    x = _tokens_heads_dim(generator, tokens=len(positions), dim=dim)
    assert torch.equal(apply_rope(x[..., dims], sub_cos, sub_sin), apply_rope(x, cos, sin)[..., dims])


@pytest.mark.parametrize("case", ["tiny", "deepseek-v3"])
def test_deinterleave_permutation_reproduces_hf_interleaved_rope(case):
    generator = torch.Generator().manual_seed(3)
    hf_config = _deepseek_config(*DEEPSEEK_ROPES[case])
    dim = hf_config.qk_rope_head_dim
    rotary = hf_deepseek.DeepseekV3RotaryEmbedding(hf_config)
    positions = torch.tensor([0, 1, 2, 130, 511, 4096, 100_000])
    hf_cos, hf_sin = _hf_cos_sin(rotary, positions)
    q = torch.randn(1, 4, len(positions), dim, generator=generator)  # HF layout [batch, heads, tokens, dim]
    k = torch.randn(1, 1, len(positions), dim, generator=generator)
    hf_q, hf_k = hf_deepseek.apply_rotary_pos_emb_interleave(q, k, hf_cos[None], hf_sin[None])

    perm = deinterleave_rope_dims(dim)
    assert sorted(perm.tolist()) == list(range(dim))
    cos, sin = rope_cos_sin(*rope_inv_freq(ModelConfig.from_dict(hf_config.to_dict()).rope), positions)
    ours_q = apply_rope(q[0].transpose(0, 1)[..., perm], cos, sin)
    ours_k = apply_rope(k[0].transpose(0, 1)[..., perm], cos, sin)
    # Same fp32 products and sums in the same order: bit-identical, not merely close.
    assert torch.equal(ours_q, hf_q[0].transpose(0, 1))
    assert torch.equal(ours_k, hf_k[0].transpose(0, 1))


def test_deinterleave_permutation_layout():
    assert deinterleave_rope_dims(8).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    with pytest.raises(ValueError):
        deinterleave_rope_dims(7)
