"""Everything the coordinator is started with (the `helix coordinator` flags)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CoordinatorConfig:
    shard_address: str  # host:port of shard rank 0's Shard gRPC service
    host: str = "0.0.0.0"
    port: int = 50051
    metrics_port: int | None = 9300  # None: no /metrics endpoint
    tokenizer_dir: str = ""  # empty: the checkpoint's own, when this machine can read it
    use_checkpoint_tokenizer: bool = True  # False: no tokenizer unless tokenizer_dir names one
    max_new_tokens_limit: int = 0  # 0: the cluster's max_context_tokens
    drain_grace_s: float = 30.0
    # Generate streams open at once (each holds a gRPC worker thread); one more is refused with
    # RESOURCE_EXHAUSTED. Cancel, GetInfo and health have CONTROL_THREADS more threads of their own.
    max_streams: int = 256
    # Testing aid: every message between coordinator and shard rank 0 arrives this much later.
    # The decode loop lives on the shards, so streams keep their pace; only TTFT grows.
    inject_control_delay_ms: float = 0.0
