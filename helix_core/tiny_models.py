"""Small random-weight Hugging Face checkpoints for tests and demos, and the HF model used as oracle.

Every tensor gets random values after construction: default inits (zero biases, unit norms, a zero
router bias) would hide a loader that skips or swaps them. Weights are scaled by ``1/sqrt(fan_in)`` so
activations stay O(1) through the layers and the logits are not degenerate. All split dims (heads,
intermediate sizes, experts, vocab, LoRA ranks) divide evenly by 1, 2 and 4 ranks, except the 2 KV heads
of llama and mistral, which 4 ranks can only share by splitting the sequence.

``transformers`` is imported inside the functions: the engine imports this module without it.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

_COMMON = dict(vocab_size=256, hidden_size=64, rms_norm_eps=1e-6, tie_word_embeddings=False)

TINY_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(
        _COMMON,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        max_position_embeddings=256,
        # Wavelengths of head_dim 16 fall in all three llama3 bands: kept, smoothed and scaled.
        rope_parameters=dict(
            rope_type="llama3",
            rope_theta=10000.0,
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=64,
        ),
    ),
    "qwen2": dict(
        _COMMON,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
        intermediate_size=128,
        max_position_embeddings=256,
        # Small Qwen2 models tie the LM head to the embeddings, so the checkpoint has no lm_head.weight.
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
    ),
    "mistral": dict(
        _COMMON,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        sliding_window=None,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
    ),
    "deepseek_v3": dict(
        _COMMON,
        num_hidden_layers=3,
        first_k_dense_replace=1,  # layer 0 dense, layers 1-2 MoE
        num_attention_heads=8,
        num_key_value_heads=8,
        q_lora_rank=48,
        kv_lora_rank=32,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        intermediate_size=96,
        moe_intermediate_size=32,
        n_routed_experts=8,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,
        norm_topk_prob=True,
        routed_scaling_factor=2.5,
        max_position_embeddings=512,
        rope_parameters=dict(
            rope_type="yarn",
            rope_theta=10000.0,
            factor=4.0,
            original_max_position_embeddings=128,
            beta_fast=32,
            beta_slow=1,
            mscale=1.0,
            mscale_all_dim=1.0,
        ),
    ),
}

_PER_EXPERT = re.compile(
    r"^(?P<prefix>.*\.mlp\.experts)\.(?P<expert>\d+)\.(?P<proj>gate_proj|up_proj|down_proj)\.weight$"
)


def make_tiny_model(
    arch: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    fused_experts: bool = False,
    shard_max_size: str | int | None = None,
    **overrides: Any,
) -> Path:
    """Write a random ``arch`` checkpoint (config.json + safetensors) to ``out_dir`` and return that path.

    ``overrides`` replace entries of ``TINY_DEFAULTS[arch]`` (HF config field names). ``fused_experts``
    stores MoE experts as 3-D ``mlp.experts.gate_up_proj`` [E, 2I, H] (gate rows, then up rows) and
    ``mlp.experts.down_proj`` [E, H, I] instead of HF's per-expert tensors. ``shard_max_size`` (e.g.
    "20KB") writes a sharded checkpoint with ``model.safetensors.index.json``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if arch not in TINY_DEFAULTS:
        raise ValueError(f"unknown tiny model arch {arch!r}; known: {sorted(TINY_DEFAULTS)}")
    out = Path(out_dir)
    config = AutoConfig.for_model(arch, **{**TINY_DEFAULTS[arch], **overrides})
    # HF initialises weights from the global RNG; keep callers' random streams untouched.
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(config)
    _randomize(model, torch.Generator().manual_seed(seed))
    _cast(model, dtype)
    save_kwargs = {} if shard_max_size is None else {"max_shard_size": shard_max_size}
    model.save_pretrained(out, **save_kwargs)
    if fused_experts:
        _fuse_experts(out, shard_max_size)
    return out


def load_hf_model(model_dir: str | Path, dtype: torch.dtype = torch.float32):
    """The transformers model of ``model_dir`` in eval mode, with eager attention and eager experts."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="eager", experts_implementation="eager"
    )
    return model.eval()


@torch.no_grad()
def _randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    for name, tensor in model.state_dict().items():
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
        if tensor.ndim >= 2:  # [out, in] matrices, [E, out, in] experts, embeddings: 1/sqrt(fan_in)
            value = noise * tensor.shape[-1] ** -0.5
        elif name.endswith("norm.weight"):
            value = 1.0 + 0.1 * noise
        else:  # biases and DeepSeek's router e_score_correction_bias
            value = 0.1 * noise
        tensor.copy_(value)


def _cast(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast to ``dtype``, but keep what HF keeps in fp32 (DeepSeek's router bias) as real checkpoints do."""
    keep_fp32 = set(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    model.to(dtype)
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if name in keep_fp32:
                module.register_buffer(name, buffer.float())
    model.config.dtype = dtype


def _fuse_experts(out: Path, shard_max_size: str | int | None) -> None:
    """Rewrite the checkpoint with each layer's per-expert matrices stacked into two 3-D tensors."""
    from huggingface_hub import save_torch_state_dict

    files = sorted(out.glob("*.safetensors"))
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        tensors.update(load_file(path))
    experts: dict[str, dict[str, dict[int, torch.Tensor]]] = defaultdict(lambda: defaultdict(dict))
    fused: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        match = _PER_EXPERT.match(name)
        if match:
            experts[match["prefix"]][match["proj"]][int(match["expert"])] = tensor
        else:
            fused[name] = tensor
    for prefix, projs in experts.items():
        gate, up, down = (_stack_experts(projs[proj]) for proj in ("gate_proj", "up_proj", "down_proj"))
        fused[f"{prefix}.gate_up_proj"] = torch.cat([gate, up], dim=1)
        fused[f"{prefix}.down_proj"] = down

    for path in files:
        path.unlink()
    (out / "model.safetensors.index.json").unlink(missing_ok=True)
    save_torch_state_dict(fused, out, max_shard_size=shard_max_size or "50GB", metadata={"format": "pt"})


def _stack_experts(by_expert: dict[int, torch.Tensor]) -> torch.Tensor:
    return torch.stack([by_expert[expert] for expert in sorted(by_expert)])
