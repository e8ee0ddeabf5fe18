"""`helix serve`: a whole cluster on this machine, the coordinator in this process and one shard
process per device.

The shards run in their own process group; Ctrl-C or SIGTERM drains the coordinator (live
streams finish, up to the grace period), then stops the shards. If a shard dies, the whole group
is restarted with a new rendezvous address (collectives cannot re-admit a lost rank), and the
coordinator reconnects to the new rank 0 by itself; requests in flight at the failure end with
UNAVAILABLE.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from services.config_checks import port_check, refuse_out_of_range
from services.coordinator.config import CoordinatorConfig
from services.ports import free_port
from services.shard.config import ShardConfig
from services.shard_processes import ShardProcesses

START_TIMEOUT_S = 300.0
MAX_RESTARTS = 5


@dataclass(frozen=True)
class ServeOptions:
    shard: ShardConfig  # rank 0's config; the others differ in rank and ports
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = 9300
    shard_base_port: int = 50061  # 0: free ports
    shard_metrics_base_port: int | None = 9400  # 0: free ports; None: no shard /metrics
    ready_file: str = ""
    inject_control_delay_ms: float = 0.0
    max_restarts: int = MAX_RESTARTS
    demo_tokens: int = 0  # once ready, stream this many tokens from a client, print them and the TTL
    exit_after_demo: bool = False

    def __post_init__(self):
        refuse_out_of_range([
            port_check("--port", self.port),
            port_check("--metrics-port", self.metrics_port),
            port_check("--shard-port", self.shard_base_port),
            port_check("--shard-metrics-port", self.shard_metrics_base_port),
            ("--max-restarts", self.max_restarts, self.max_restarts >= 0, "at least 0"),
            ("--demo", self.demo_tokens, self.demo_tokens >= 0, "at least 0"),
            ("--inject-control-delay-ms", self.inject_control_delay_ms, self.inject_control_delay_ms >= 0,
             "at least 0"),
        ])


def tiny_default_model() -> str:
    """The no-argument demo: a small random-weight Llama made on the fly in a temporary directory."""
    from helix_core.tiny_models import make_tiny_model

    out = Path(tempfile.mkdtemp(prefix="helix-tiny-llama-"))
    make_tiny_model("llama", out, max_position_embeddings=1024)
    return str(out)


def shard_configs(options: ServeOptions) -> list[ShardConfig]:
    base, world = options.shard, options.shard.world_size

    def port(start, rank):
        return free_port() if start == 0 else start + rank

    return [
        dataclasses.replace(
            base,
            rank=rank,
            host=options.host,
            port=port(options.shard_base_port, rank),
            metrics_port=None
            if options.shard_metrics_base_port is None
            else port(options.shard_metrics_base_port, rank),
        )
        for rank in range(world)
    ]


def serve(options: ServeOptions) -> int:
    from services.coordinator.server import Coordinator

    shards = ShardProcesses(shard_configs(options))
    shards.start(f"127.0.0.1:{free_port()}")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    coordinator = None
    try:
        rank0 = shards.configs[0]
        coordinator = Coordinator(
            CoordinatorConfig(
                shard_address=f"127.0.0.1:{rank0.port}",
                host=options.host,
                port=options.port,
                metrics_port=options.metrics_port,
                tokenizer_dir="",
                drain_grace_s=rank0.drain_grace_s,
                inject_control_delay_ms=options.inject_control_delay_ms,
            )
        ).start()
        _announce(options, coordinator, shards)
        if not _wait_ready(coordinator, shards, stop):
            return 0 if stop.is_set() else 1
        print("helix serve: ready (Ctrl-C stops it)", flush=True)
        _write_ready_file(options, coordinator, shards)
        if options.demo_tokens:
            demo_ok = _demo(f"127.0.0.1:{coordinator.port}", options.demo_tokens)
            if options.exit_after_demo:
                return 0 if demo_ok else 1
        return _supervise(options, coordinator, shards, stop)
    finally:
        print("helix serve: stopping", flush=True)
        if coordinator is not None:
            coordinator.drain(options.shard.drain_grace_s)
        shards.stop(grace_s=options.shard.drain_grace_s + 10)
        if coordinator is not None:
            coordinator.stop()
        print("helix serve: stopped", flush=True)


def _announce(options: ServeOptions, coordinator, shards: ShardProcesses) -> None:
    shard = options.shard
    print(
        f"helix serve: model {shard.model_dir}, plan {shard.plan_spec}, {shard.world_size} {shard.device} "
        f"shards, dtype {shard.dtype}",
        flush=True,
    )
    metrics = (
        f"http://{options.host}:{coordinator.metrics_port}/metrics" if coordinator.metrics_port else "off"
    )
    print(f"helix serve: coordinator gRPC {options.host}:{coordinator.port}, metrics {metrics}", flush=True)
    for config, pid in zip(shards.configs, shards.pids):
        metrics = f"http://{options.host}:{config.metrics_port}/metrics" if config.metrics_port else "off"
        print(
            f"helix serve: shard {config.rank} pid {pid}, gRPC {options.host}:{config.port}, "
            f"metrics {metrics}",
            flush=True,
        )


def _wait_ready(coordinator, shards: ShardProcesses, stop: threading.Event) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not coordinator.wait_ready(0.2):
        dead = shards.exited()
        if dead:
            print(
                f"helix serve: shard rank {dead[0][0]} exited with code {dead[0][1]} while starting; "
                f"see its messages above",
                flush=True,
            )
            return False
        if stop.is_set():
            return False
        if time.monotonic() > deadline:
            print(f"helix serve: the shards were not ready within {START_TIMEOUT_S:.0f} s", flush=True)
            return False
    return True


def _supervise(options: ServeOptions, coordinator, shards: ShardProcesses, stop: threading.Event) -> int:
    restarts = 0
    while not stop.wait(0.5):
        dead = shards.exited()
        if not dead:
            continue
        if restarts >= options.max_restarts:
            print(
                f"helix serve: shard rank {dead[0][0]} exited (code {dead[0][1]}) after {restarts} restarts; "
                f"giving up",
                flush=True,
            )
            return 1
        restarts += 1
        print(
            f"helix serve: shard rank {dead[0][0]} exited (code {dead[0][1]}); restarting the group "
            f"({restarts}/{options.max_restarts})",
            flush=True,
        )
        shards.kill()
        shards.start(f"127.0.0.1:{free_port()}")
        _write_ready_file(options, coordinator, shards, restarts=restarts)
    return 0


def _demo(target: str, tokens: int) -> bool:
    """A client request against the cluster just started, as a user would send it."""
    from services.client import HelixClient, HelixError
    from services.generate_cli import summary

    prompt = list(range(1, 9))
    print(f"helix serve: demo: generating {tokens} tokens for prompt {prompt}", flush=True)
    try:
        with HelixClient(target, timeout_s=120) as client:
            stream = client.stream(prompt, tokens)
            for token in stream:
                print(f"{token.token_id} ", end="", flush=True)
            print("\n" + summary(stream.result), flush=True)
        return True
    except HelixError as error:
        print(f"\nhelix serve: demo failed: {error}", flush=True)
        return False


def _write_ready_file(options: ServeOptions, coordinator, shards: ShardProcesses, restarts: int = 0) -> None:
    """Where everything listens, as JSON, for scripts and tests (written atomically)."""
    if not options.ready_file:
        return
    info = {
        "coordinator": f"{options.host}:{coordinator.port}",
        "coordinator_metrics_port": coordinator.metrics_port,
        "serve_pid": os.getpid(),
        "restarts": restarts,
        "shards": [
            {
                "rank": c.rank,
                "pid": pid,
                "address": f"{options.host}:{c.port}",
                "metrics_port": c.metrics_port,
            }
            for c, pid in zip(shards.configs, shards.pids)
        ],
    }
    path = Path(options.ready_file)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(info, indent=1))
    temporary.replace(path)
