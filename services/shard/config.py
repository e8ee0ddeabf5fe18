"""Everything one shard process is started with (the `helix shard` flags)."""

from __future__ import annotations

from dataclasses import dataclass

from services.config_checks import port_check, refuse_out_of_range

# Serving wants a failed peer noticed within seconds, not torch's default of minutes. Idle
# followers wait on the control channel under the same timeout, so rank 0's scheduler sends
# heartbeats at a third of it.
DEFAULT_COLLECTIVE_TIMEOUT_S = 10.0
# Forming the group waits for every rank to start, which on Kubernetes includes image pulls.
DEFAULT_JOIN_TIMEOUT_S = 600.0
# the flags that set a shard's ports: its own, and helix serve's for the shards it starts (base + rank)
PORT_FLAG = "--port (serve: --shard-port)"
METRICS_PORT_FLAG = "--metrics-port (serve: --shard-metrics-port)"


@dataclass(frozen=True)
class ShardConfig:
    model_dir: str
    plan_spec: str  # Plan.parse syntax, e.g. "helix:kvp=2,tpa=1"
    world_size: int
    rank: int
    rendezvous: str  # host:port of rank 0's torch.distributed store
    device: str = "cpu"  # "cpu" or "cuda"
    dtype: str = "float32"
    host: str = "0.0.0.0"
    port: int = 50061  # gRPC
    metrics_port: int | None = 9400  # None: no /metrics endpoint
    model_name: str = ""  # empty: the checkpoint directory's name
    kv_pages: int = 256  # 0: as many as fit in kv_memory_fraction of the free GPU memory (CUDA)
    kv_memory_fraction: float = 0.9
    page_size: int | None = None  # None: the engine's default for the model (64 for MLA, 16 otherwise)
    stage_size: int = 16
    prefill_chunk: int = 256  # prompt tokens per step (per forward pass)
    hopb_pieces: int = 1
    all_reduce: str = "auto"  # auto | nccl | symm (symmetric-memory one-shot over NVLink P2P, CUDA) | nccl-window
    exchange: str = "auto"  # auto | all_to_all | gather (the KVP exchange as a one-shot sum, CUDA)
    small_linear: str = "auto"  # auto | on | off: batch-1 projections by the Triton kernel
    o_projection: str = "sharded"  # sharded | replicated (EngineOptions.o_projection)
    max_batch_size: int = 64
    max_waiting_requests: int = 0  # 0: no limit
    profile_every_n_steps: int = 0
    threads: int = 0  # torch intra-op threads; 0: the machine's cores / local shards
    collective_timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S
    join_timeout_s: float = DEFAULT_JOIN_TIMEOUT_S
    drain_grace_s: float = 30.0
    seed: int = 0

    def __post_init__(self):
        refuse_out_of_range([
            ("--world-size", self.world_size, self.world_size >= 1, "at least 1"),
            ("--rank", self.rank, 0 <= self.rank < max(1, self.world_size), "in [0, --world-size)"),
            port_check(PORT_FLAG, self.port),
            port_check(METRICS_PORT_FLAG, self.metrics_port),
            ("--kv-pages", self.kv_pages, self.kv_pages >= 0, "at least 0 (0: fill --kv-memory-fraction)"),
            ("--kv-memory-fraction", self.kv_memory_fraction, 0 < self.kv_memory_fraction <= 1, "in (0, 1]"),
            ("--page-size", self.page_size, self.page_size is None or self.page_size >= 1, "at least 1"),
            ("--stage-size", self.stage_size, self.stage_size >= 1, "at least 1"),
            ("--prefill-chunk", self.prefill_chunk, self.prefill_chunk >= 1, "at least 1"),
            ("--hopb-pieces", self.hopb_pieces, self.hopb_pieces >= 1, "at least 1 (1: off)"),
            ("--max-batch-size", self.max_batch_size, self.max_batch_size >= 1, "at least 1"),
            ("--max-waiting-requests", self.max_waiting_requests, self.max_waiting_requests >= 0,
             "at least 0 (0: no limit)"),
            ("--profile-every", self.profile_every_n_steps, self.profile_every_n_steps >= 0, "at least 0 (0: off)"),
            ("--threads (serve: --threads-per-shard)", self.threads, self.threads >= 0, "at least 0 (0: the cores / local shards)"),
            ("--collective-timeout-s", self.collective_timeout_s, self.collective_timeout_s > 0, "above 0"),
            ("--join-timeout-s", self.join_timeout_s, self.join_timeout_s > 0, "above 0"),
            ("--drain-grace-s", self.drain_grace_s, self.drain_grace_s >= 0, "at least 0"),
        ])

    @property
    def init_method(self) -> str:
        return self.rendezvous if "://" in self.rendezvous else f"tcp://{self.rendezvous}"
