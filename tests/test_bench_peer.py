"""The HF peer of `helix bench` builds and decodes every bench shape (shrunk to CPU size)."""
import pytest
import torch

pytest.importorskip("transformers")

from helix_core.bench.peer_hf import hf_config  # noqa: E402
from helix_core.bench.shapes import shape_config  # noqa: E402

SMALL = {
    "deepseek-mla": {"hidden_size": 128, "num_attention_heads": 4, "q_lora_rank": 32, "kv_lora_rank": 32,
                     "qk_rope_head_dim": 16, "qk_nope_head_dim": 16, "v_head_dim": 16, "intermediate_size": 96,
                     "vocab_size": 300},
    "llama3-8b": {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
                  "intermediate_size": 96, "vocab_size": 300},
}


@pytest.mark.parametrize("shape", sorted(SMALL))
@pytest.mark.parametrize("layers", [2, 5])
def test_peer_model_is_dense_and_decodes_with_a_static_cache(shape, layers):
    from transformers import AutoModelForCausalLM, StaticCache

    config = hf_config(shape, layers, **SMALL[shape])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa").eval()
    assert len(model.model.layers) == layers
    # the bench shape has no routed experts: neither HF nor our engine may put a router in any layer
    ours = shape_config(shape, layers)
    assert not any(ours.is_moe_layer(i) for i in range(layers))
    routed = [layer for layer in model.model.layers if hasattr(layer.mlp, "gate") and hasattr(layer.mlp, "experts")]
    assert not routed
    cache = StaticCache(config=config, max_cache_len=16)
    ids = torch.ones(1, 1, dtype=torch.long)
    with torch.inference_mode():
        for pos in range(3):
            logits = model(ids, position_ids=torch.tensor([[pos]]), cache_position=torch.tensor([pos]),
                           past_key_values=cache, use_cache=True).logits
    assert logits.shape == (1, 1, config.vocab_size)
    assert torch.isfinite(logits).all()
