"""Shard processes on this machine, started with subprocess (never fork: torch and gRPC threads do
not survive it) in one process group of their own, so that they are stopped together and a Ctrl-C
at the terminal reaches only their launcher, which stops them in order.

Used by `helix serve` (all ranks of the group) and `helix shard --local-ranks L` (one pod's GPUs).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

from helix_core.cpu_threads import threads_per_rank
from services.shard.config import ShardConfig
from services.shard.main import PARENT_ENV


def shard_argv(config: ShardConfig) -> list[str]:
    """The `helix shard` command line that runs exactly this config."""
    argv = [
        sys.executable,
        "-m",
        "services.cli",
        "shard",
        "--model",
        config.model_dir,
        "--plan",
        config.plan_spec,
        "--world-size",
        str(config.world_size),
        "--rank",
        str(config.rank),
        "--rendezvous",
        config.rendezvous,
        "--device",
        config.device,
        "--dtype",
        config.dtype,
        "--host",
        config.host,
        "--port",
        str(config.port),
        "--kv-pages",
        str(config.kv_pages),
        "--kv-memory-fraction",
        str(config.kv_memory_fraction),
        "--stage-size",
        str(config.stage_size),
        "--prefill-chunk",
        str(config.prefill_chunk),
        "--hopb-pieces",
        str(config.hopb_pieces),
        "--all-reduce",
        config.all_reduce,
        "--exchange",
        config.exchange,
        "--small-linear",
        config.small_linear,
        "--o-projection",
        config.o_projection,
        "--max-batch-size",
        str(config.max_batch_size),
        "--max-waiting-requests",
        str(config.max_waiting_requests),
        "--profile-every",
        str(config.profile_every_n_steps),
        "--threads",
        str(config.threads),
        "--collective-timeout-s",
        str(config.collective_timeout_s),
        "--join-timeout-s",
        str(config.join_timeout_s),
        "--drain-grace-s",
        str(config.drain_grace_s),
        "--seed",
        str(config.seed),
    ]
    if config.model_name:
        argv += ["--model-name", config.model_name]
    if config.page_size is not None:  # else the engine's default for the model
        argv += ["--page-size", str(config.page_size)]
    argv += (
        ["--metrics-port", str(config.metrics_port)] if config.metrics_port is not None else ["--no-metrics"]
    )
    return argv


class ShardProcesses:
    def __init__(self, configs: list[ShardConfig]):
        self.configs = configs
        self.procs: list[subprocess.Popen] = []

    def start(self, rendezvous: str | None = None) -> None:
        """Start one process per config (with a new rendezvous address when given)."""
        if rendezvous is not None:
            self.configs = [dataclasses.replace(c, rendezvous=rendezvous) for c in self.configs]
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        self.procs = []
        for config in self.configs:
            group = self.procs[0].pid if self.procs else 0  # 0: the first one leads a new group
            self.procs.append(subprocess.Popen(shard_argv(config), env=env, process_group=group))

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def exited(self) -> list[tuple[int, int]]:
        """(rank, exit code) of every process that has ended."""
        return [
            (config.rank, proc.returncode)
            for config, proc in zip(self.configs, self.procs)
            if proc.poll() is not None
        ]

    def signal_all(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def stop(self, grace_s: float) -> None:
        """SIGTERM (each shard drains), then SIGKILL whatever is left after grace_s."""
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        self.signal_all(signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def run_local_ranks(config: ShardConfig, local_ranks: int, pod_index: int) -> int:
    """`helix shard --local-ranks L --pod-index I`: one process per local GPU, rank I * L + j on
    gRPC port + j and metrics port + j. The first exit ends the pod, so that its orchestrator
    restarts it (and the group re-forms) rather than leaving a group with a rank missing."""
    threads = threads_per_rank(local_ranks, config.threads)
    configs = [
        dataclasses.replace(
            config,
            rank=pod_index * local_ranks + j,
            port=config.port + j,
            threads=threads,
            metrics_port=None if config.metrics_port is None else config.metrics_port + j,
        )
        for j in range(local_ranks)
    ]
    processes = ShardProcesses(configs)
    processes.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        exited = processes.exited()
        if exited:
            rank, code = exited[0]
            print(f"helix shard: rank {rank} exited with code {code}; stopping the others", flush=True)
            processes.stop(grace_s=config.drain_grace_s)
            return code or 0
    processes.stop(grace_s=config.drain_grace_s + 10)
    return 0
