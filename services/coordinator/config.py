"""Everything the coordinator is started with (the `helix coordinator` flags)."""

from __future__ import annotations

from dataclasses import dataclass

from services.config_checks import port_check, refuse_out_of_range


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

    def __post_init__(self):
        refuse_out_of_range([
            port_check("--port", self.port),
            port_check("--metrics-port", self.metrics_port),
            ("--max-new-tokens-limit", self.max_new_tokens_limit, self.max_new_tokens_limit >= 0,
             "at least 0 (0: the cluster's max context)"),
            ("--drain-grace-s", self.drain_grace_s, self.drain_grace_s >= 0, "at least 0"),
            ("--max-streams", self.max_streams, self.max_streams >= 1, "at least 1"),
            ("--inject-control-delay-ms", self.inject_control_delay_ms, self.inject_control_delay_ms >= 0,
             "at least 0"),
        ])
