"""Per-kernel CUDA times of one MLA decode-attention call under each given config (torch profiler, 20 calls
after warm-up), for the two-pass kernels' split of time between their passes. GPU only.

    python scripts/two_pass_profile.py --batch 4 --context 524288 --heads 128
"""
import argparse
import collections

import torch

from helix_core.kernels import bench_decode as bd
from helix_core.kernels import decode_attention as da

CONFIGS = {"default": da.DecodeConfig(), "two-pass/bn32": da.DecodeConfig(two_pass=True),
           "two-pass/bn64/s1": da.DecodeConfig(two_pass=True, block_n=64, num_stages=1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--context", type=int, default=524288)
    p.add_argument("--heads", type=int, default=128)
    args = p.parse_args()
    prob = bd.Problem(batch=args.batch, context=args.context, heads=args.heads, kv_heads=1, dk=576, dv=512,
                      mla=True, page_size=16, dtype=torch.bfloat16, seed=0, device=torch.device("cuda"))
    groups = da.HeadGroups(prob.kv_head_of_q)
    for label, cfg in CONFIGS.items():
        def call():
            return da.paged_decode_attention(prob.q, prob.key_pages, None, prob.block_table, prob.lengths, prob.scale,
                                             groups, value_dim=512, max_length=args.context, config=cfg)
        for _ in range(3):
            call()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                call()
            torch.cuda.synchronize()
        totals = collections.defaultdict(float)
        for event in prof.events():
            if event.device_type == torch.autograd.DeviceType.CUDA:
                totals[event.name[:60]] += event.device_time / 20
        print(f"{label} B={args.batch} L={args.context} H={args.heads}: " +
              ", ".join(f"{name} {us:.1f} us" for name, us in sorted(totals.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
