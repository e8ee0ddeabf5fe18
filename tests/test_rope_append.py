"""The fused RoPE + KV append kernel (Triton: compiled on a GPU, else its CPU interpreter) against
an independent rotation: RoPE written out per dimension pair in float64, and plain row writes."""
import math

import pytest
import torch
from triton_interpreter import kernel_test_module

# module fixtures and the fresh-process rerun, collected by pytest under these names
(DEVICE, NEEDS_FRESH_PROCESS, _interpreter_while_these_tests_run, _needs_interpreter,
 test_rerun_in_fresh_interpreter) = kernel_test_module(__file__, "the RoPE + KV append kernel")

from helix_core.kernels.rope_append import rope_and_append, rope_append_usable  # noqa: E402


def rotate_reference(x: torch.Tensor, positions: list[int], theta: float) -> torch.Tensor:
    """RoPE in its rotate-half layout, pair (i, i + d/2) turned by position * theta^(-2i/d), float64."""
    out = x.double().clone()
    half = x.shape[-1] // 2
    for t, pos in enumerate(positions):
        for i in range(half):
            angle = pos * theta ** (-2 * i / x.shape[-1])
            a, b = x[t, :, i].double(), x[t, :, i + half].double()
            out[t, :, i] = a * math.cos(angle) - b * math.sin(angle)
            out[t, :, i + half] = b * math.cos(angle) + a * math.sin(angle)
    return out


CASES = [
    # tokens, q heads, kv heads, head dim, value dim: GQA; head counts off the 8-head block; an odd half
    (3, 4, 2, 8, 8),
    (2, 12, 3, 6, 6),
    (1, 32, 8, 128, 128),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tokens,hq,hkv,dim,dv", CASES)
def test_rotates_q_and_k_and_appends_k_and_v(tokens, hq, hkv, dim, dv, dtype):
    gen = torch.Generator().manual_seed(tokens * 100 + hq + dim)
    theta = 10000.0
    positions = [5 + 97 * t for t in range(tokens)]
    # q, k and v as views of one fused projection row, as the model hands them over
    qkv = torch.randn(tokens, hq * dim + hkv * dim + hkv * dv, generator=gen).to(dtype)
    q = qkv[:, : hq * dim].view(tokens, hq, dim)
    k = qkv[:, hq * dim : (hq + hkv) * dim].view(tokens, hkv, dim)
    v = qkv[:, (hq + hkv) * dim :].view(tokens, hkv, dv)
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    freqs = torch.tensor(positions, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos().float(), emb.sin().float()
    rows = 4 * tokens + 3
    slots = torch.tensor([2 * t + 1 for t in range(tokens)])  # every other row; the rest must stay 0
    key_rows = torch.zeros(rows, hkv, dim, dtype=dtype)
    value_rows = torch.zeros(rows, hkv, dv, dtype=dtype)
    on = lambda t: t.to(DEVICE)  # noqa: E731
    keys_dev, values_dev = on(key_rows), on(value_rows)
    q_rot = rope_and_append(on(q), on(k), on(v), on(cos), on(sin), on(slots), keys_dev, values_dev)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    assert q_rot.shape == (tokens, hq, dim) and q_rot.dtype == dtype
    torch.testing.assert_close(q_rot.cpu().double(), rotate_reference(q, positions, theta), **tol)
    expected_keys = torch.zeros(rows, hkv, dim, dtype=torch.float64)
    expected_keys[slots] = rotate_reference(k, positions, theta)
    torch.testing.assert_close(keys_dev.cpu().double(), expected_keys, **tol)
    expected_values = torch.zeros(rows, hkv, dv, dtype=dtype)
    expected_values[slots] = v
    assert torch.equal(values_dev.cpu(), expected_values)  # a copy: exact


def test_refuses_latent_values_and_odd_dims():
    q, k = torch.randn(1, 4, 6, device=DEVICE), torch.randn(1, 1, 6, device=DEVICE)
    keys = torch.zeros(4, 1, 6, device=DEVICE)
    assert not rope_append_usable(q, k, None, keys, None)  # MLA: values are a view of the keys
    odd = torch.randn(1, 4, 5, device=DEVICE)
    assert not rope_append_usable(odd, odd[:, :1], odd[:, :1], torch.zeros(4, 1, 5, device=DEVICE),
                                  torch.zeros(4, 1, 5, device=DEVICE))
    with pytest.raises(ValueError, match="do not fit"):
        rope_and_append(q, k, None, torch.zeros(1, 6), torch.zeros(1, 6), torch.zeros(1, dtype=torch.long), keys, None)
