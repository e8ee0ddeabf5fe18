"""Start N ranks on this machine (CPU workers or one process per GPU) and drive them from Python.

    with LocalCluster(model_dir, Plan.helix(kvp=2, tpa=1)) as cluster:
        first = cluster.prefill([PrefillItem(0, [1, 2, 3])])
        nxt = cluster.decode([0])

The parent talks to rank 0 over a pipe; rank 0 broadcasts each command to the group. Every
wait has a timeout, and a rank that dies fails the call instead of hanging it.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import socket
import time
import traceback
from dataclasses import dataclass

import torch

from . import cpu_threads
from .config import ModelConfig
from .engine import EngineOptions
from .plan import Plan

DEFAULT_CALL_TIMEOUT_S = 300.0


class ClusterError(RuntimeError):
    """The rank group failed (a rank died, or did not answer in time)."""


@dataclass(frozen=True)
class RankSetup:
    model_dir: str
    plan: Plan
    device_type: str
    options: EngineOptions
    init_method: str
    threads_per_rank: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def device_unavailable(device_type: str) -> str | None:
    """Why `--device device_type` cannot run here (cuda without a CUDA device), or None when it can."""
    if device_type != "cuda" or torch.cuda.is_available():
        return None
    return f"device cuda was asked for, but torch {torch.__version__} sees no CUDA device"


def rank_device(device_type: str, rank: int) -> torch.device:
    if device_type == "cuda":
        if (reason := device_unavailable(device_type)) is not None:
            raise RuntimeError(reason)
        local = rank % torch.cuda.device_count()
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def start_rank(rank: int, setup: RankSetup):
    """Join the group, build the engine; returns (engine, comm). Shared with the shard server."""
    from .comm import Comm, init_distributed
    from .engine import Engine

    torch.set_num_threads(setup.threads_per_rank)
    device = rank_device(setup.device_type, rank)
    init_distributed(rank, setup.plan.world_size, setup.init_method, device)
    comm = Comm(setup.plan, rank, device)
    engine = Engine(setup.model_dir, setup.plan, rank, comm, device, setup.options)
    return engine, comm


def _rank_main(rank: int, setup: RankSetup, conn) -> None:
    from .comm import shutdown_distributed
    from .group import HEARTBEAT_INTERVAL_S, GroupDriver, follow

    logging.basicConfig(level=os.environ.get("HELIX_LOG_LEVEL", "WARNING"))
    try:
        engine, _ = start_rank(rank, setup)
    except Exception as error:
        if conn is not None:
            conn.send(("error", _portable(error)))
        raise
    try:
        if rank != 0:
            follow(engine)
            return
        driver = GroupDriver(engine)
        conn.send(("ready", None))
        while True:
            if not conn.poll(HEARTBEAT_INTERVAL_S):
                driver.heartbeat()
                continue
            name, args, kwargs = conn.recv()
            if name == "shutdown":
                driver.shutdown()
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", driver.call(name, *args, **kwargs)))
            except Exception as error:
                conn.send(("error", _portable(error)))
    finally:
        shutdown_distributed()


def _portable(error: Exception) -> Exception:
    """The error itself if it pickles, else a RuntimeError with its text and traceback."""
    import pickle

    try:
        pickle.dumps(error)
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}\n{traceback.format_exc()}")


class LocalCluster:
    def __init__(self, model_dir: str, plan: Plan, device: str = "cpu", options: EngineOptions = EngineOptions(),
                 start_timeout_s: float = 300.0, call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
                 threads_per_rank: int | None = None):
        self.plan = plan
        self.call_timeout_s = call_timeout_s
        plan.validate(ModelConfig.from_dir(model_dir))  # refuse a bad plan before any process starts
        threads = cpu_threads.threads_per_rank(plan.world_size, threads_per_rank or 0)
        setup = RankSetup(str(model_dir), plan, device, options, f"tcp://127.0.0.1:{free_port()}", threads)
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self._procs = [
            context.Process(target=_rank_main, args=(rank, setup, child if rank == 0 else None), daemon=True)
            for rank in range(plan.world_size)
        ]
        for proc in self._procs:
            proc.start()
        try:
            self._receive(start_timeout_s, "start")
        except BaseException:
            self._kill()
            raise

    # ---- engine commands ------------------------------------------------------------------------
    def prefill(self, items, return_logits: bool = False):
        return self._call("prefill", items, return_logits=return_logits)

    def decode(self, seq_ids, input_tokens=None, return_logits: bool = False):
        return self._call("decode", seq_ids, input_tokens=input_tokens, return_logits=return_logits)

    def decode_launch(self, seq_ids, input_tokens=None, return_logits: bool = False) -> int:
        """Enqueue a decode step on every rank; its ticket (see Engine.decode_launch)."""
        return self._call("decode_launch", seq_ids, input_tokens=input_tokens, return_logits=return_logits)

    def decode_finish(self, ticket: int):
        return self._call("decode_finish", ticket)

    def free(self, seq_ids) -> None:
        self._call("free", seq_ids)

    def stats(self) -> list[dict]:
        """Every rank's stats, in rank order."""
        return self._call("gather_stats")

    def agreement(self) -> dict:
        return self._call("agreement")

    def generate(self, items, max_new_tokens: int, return_logits: bool = False, pipelined: bool = False):
        """Prefill the prompts, then decode until each has `max_new_tokens` tokens (all in lockstep).
        pipelined: launch each step before the previous one is finished, as the shard server does."""
        outs = {item.seq_id: [tok] for item, tok in zip(items, self.prefill(items, return_logits))}
        ids = [item.seq_id for item in items]
        in_flight = None
        for _ in range(max_new_tokens - 1):
            if not pipelined:
                for tok in self.decode(ids, return_logits=return_logits):
                    outs[tok.seq_id].append(tok)
                continue
            ticket = self.decode_launch(ids, return_logits=return_logits)
            if in_flight is not None:
                for tok in self.decode_finish(in_flight):
                    outs[tok.seq_id].append(tok)
            in_flight = ticket
        if in_flight is not None:
            for tok in self.decode_finish(in_flight):
                outs[tok.seq_id].append(tok)
        return outs

    # ---- plumbing -------------------------------------------------------------------------------
    def _call(self, name, *args, **kwargs):
        if self._conn is None:
            raise ClusterError("cluster is closed")
        self._conn.send((name, args, kwargs))
        return self._receive(self.call_timeout_s, name)

    def _receive(self, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while not self._conn.poll(0.2):
            dead = [r for r, p in enumerate(self._procs) if not p.is_alive()]
            if dead:
                self._kill()
                raise ClusterError(f"{what}: rank(s) {dead} exited (exit codes "
                                   f"{[self._procs[r].exitcode for r in dead]})")
            if time.monotonic() > deadline:
                self._kill()
                raise ClusterError(f"{what}: no answer from rank 0 within {timeout_s:.0f} s")
        status, value = self._conn.recv()
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            if all(p.is_alive() for p in self._procs):
                self._call("shutdown")
        except Exception:
            pass
        for proc in self._procs:
            proc.join(timeout=10)
        self._kill()

    def _kill(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
