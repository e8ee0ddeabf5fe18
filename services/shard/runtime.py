"""One shard process's life: load and join, then run the decode loop (rank 0) or follow it.

The state it reports (ShardStatus) is read by gRPC threads at any time; only `run` (its own
thread) changes it. READY is reported only once the weights are loaded and the group is joined.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from services.proto_gen.helix.v1 import coordinator_pb2, shard_pb2
from services.shard.commands import ShutdownCommand
from services.shard.config import ShardConfig
from services.shard.sessions import SessionHub

log = logging.getLogger(__name__)
State = shard_pb2.ShardState
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# A group command (a step) running longer than this has hung: a peer stopped mid-step leaves this
# rank's GPU spinning in a device-side wait (a collective inside a CUDA graph, the symm-mem
# barrier) that no host-side timeout reaches. Generous: a step that captures a new graph compiles.
STUCK_STEP_FACTOR = 6  # x the collective timeout
MIN_STUCK_STEP_S = 60.0


def stuck_step_limit_s(collective_timeout_s: float) -> float:
    return max(MIN_STUCK_STEP_S, STUCK_STEP_FACTOR * collective_timeout_s)


class ShardRuntime:
    def __init__(self, config: ShardConfig, metrics):
        self.config = config
        self.metrics = metrics
        self.hub = SessionHub()
        self.state = State.SHARD_STATE_EMPTY
        self.message = ""
        self.engine = None
        self.scheduler = None
        self.loaded_model: shard_pb2.LoadedModel | None = None
        self.exit_code: int | None = None
        self.on_ready_change = lambda ready: None
        self._shutdown: ShutdownCommand | None = None
        self._lock = threading.Lock()

    # ---- lifecycle (its own thread) -----------------------------------------------------------
    def run(self) -> None:
        from helix_core.group import GroupDriver, follow

        self._set_state(State.SHARD_STATE_LOADING, "loading the checkpoint and joining the shard group")
        try:
            self.engine = self._load()
        except Exception as error:
            log.exception("rank %d: load failed", self.config.rank)
            self._end(State.SHARD_STATE_FAILED, f"load failed: {type(error).__name__}: {error}", 1)
            return
        if self.config.rank != 0:
            self._set_state(State.SHARD_STATE_READY, "")
            try:
                follow(self.engine)
            except Exception as error:
                self._end(
                    State.SHARD_STATE_FAILED, f"lost the shard group: {type(error).__name__}: {error}", 1
                )
                return
            self._end(State.SHARD_STATE_EMPTY, "rank 0 shut the group down", 0)
            return
        self.scheduler = self._new_scheduler(GroupDriver(self.engine))
        with self._lock:
            if self._shutdown is not None:
                self.scheduler.submit(self._shutdown)
        self._set_state(State.SHARD_STATE_READY, "")
        self.scheduler.run()
        if self.scheduler.failure:
            self._end(State.SHARD_STATE_FAILED, self.scheduler.failure, 1)
        else:
            self._end(State.SHARD_STATE_EMPTY, "shut down", 0)

    def request_shutdown(self, drain: bool, grace_s: float) -> None:
        """Rank 0 drains (or cancels) and ends the group's loop; other ranks end with it."""
        command = ShutdownCommand(drain=drain, grace_s=grace_s)
        with self._lock:
            self._shutdown = command
            scheduler = self.scheduler
            if self.state == State.SHARD_STATE_READY:
                self.state = State.SHARD_STATE_DRAINING
                self.on_ready_change(False)
        if scheduler is not None:
            scheduler.submit(command)

    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown is not None

    def _load(self):
        from services.shard.group_join import join_group

        engine = join_group(self.config)
        engine.profiler = self._new_profiler(engine)
        cache = engine.cache
        self.metrics.kv_cache_used_pages.set_function(lambda: cache.pages_used_per_rank()[cache.kvp_rank])
        self.metrics.kv_cache_free_pages.set_function(cache.free_pages)
        self.loaded_model = self._describe(engine)
        return engine

    def _new_profiler(self, engine):
        import torch

        from services.metrics import DecodePhaseProfiler
        from services.shard.step_metrics import StepMetricsProfiler

        synchronize = torch.cuda.synchronize if engine.device.type == "cuda" else None
        phases = DecodePhaseProfiler(self.metrics.decode_phase, synchronize=synchronize)
        return StepMetricsProfiler(phases, self.metrics)

    def _new_scheduler(self, driver):
        from helix_core.group import HEARTBEAT_INTERVAL_S
        from services.shard.scheduler import Scheduler

        config = self.config
        return Scheduler(
            driver,
            self.hub,
            self.metrics,
            _reservations(self.engine),
            vocab_size=self.engine.cfg.vocab_size,
            max_context_tokens=self.loaded_model.max_context_tokens,
            max_batch_size=config.max_batch_size,
            max_waiting_requests=config.max_waiting_requests,
            prefill_budget=config.prefill_chunk,
            profile_every_n_steps=config.profile_every_n_steps,
            heartbeat_interval_s=min(HEARTBEAT_INTERVAL_S, config.collective_timeout_s / 3),
        )

    def _describe(self, engine) -> shard_pb2.LoadedModel:
        cfg, plan, config = engine.cfg, engine.plan, self.config
        raw = json.loads((Path(config.model_dir) / "config.json").read_text())
        model = shard_pb2.LoadedModel(
            model_type=cfg.model_type,
            model_name=model_name(config),
            checkpoint_path=str(Path(config.model_dir).resolve()),
            vocab_size=cfg.vocab_size,
            max_position_embeddings=cfg.max_position_embeddings,
            has_tokenizer=any((Path(config.model_dir) / name).is_file() for name in TOKENIZER_FILES),
            eos_token_ids=list(cfg.eos_token_ids),
            dtype=str(engine.dtype).removeprefix("torch."),
            plan=plan_message(plan, cfg),
            max_batch_size=config.max_batch_size,
            prefill_chunk_tokens=config.prefill_chunk,
            max_context_tokens=_reservations(engine).max_sequence_tokens(
                cfg.sliding_window or cfg.max_position_embeddings
            ),
        )
        if isinstance(raw.get("bos_token_id"), int):
            model.bos_token_id = raw["bos_token_id"]
        return model

    def _set_state(self, state, message: str) -> None:
        with self._lock:
            if state == State.SHARD_STATE_READY and self._shutdown is not None:
                state = State.SHARD_STATE_DRAINING
            self.state, self.message = state, message
        self.on_ready_change(state == State.SHARD_STATE_READY)

    def _end(self, state, message: str, exit_code: int) -> None:
        self._set_state(state, message)
        self.exit_code = exit_code

    # ---- status (any thread) ------------------------------------------------------------------
    def stuck_step(self, now_s: float | None = None) -> str | None:
        """Why this rank's group counts as hung, or None: a group command has run past the limit."""
        scheduler = self.scheduler
        since = None if scheduler is None else scheduler.group_call_since_s
        if since is None:
            return None
        elapsed = (time.monotonic() if now_s is None else now_s) - since
        limit = stuck_step_limit_s(self.config.collective_timeout_s)
        if elapsed < limit:
            return None
        return (f"a group step has not finished in {elapsed:.0f} s (limit {limit:.0f} s): a peer or a GPU "
                "hung; the group must be restarted")

    def fail_stuck(self, why: str) -> None:
        """Called from the main thread while the runtime thread is stuck in the step."""
        self._end(State.SHARD_STATE_FAILED, why, 1)

    def status(self) -> shard_pb2.ShardStatus:
        config = self.config
        stuck = self.stuck_step() if self.state != State.SHARD_STATE_FAILED else None
        status = shard_pb2.ShardStatus(
            rank=config.rank,
            world_size=config.world_size,
            state=State.SHARD_STATE_FAILED if stuck else self.state,
            message=stuck or self.message,
            device=device_name(config.device, config.rank),
        )
        engine, scheduler = self.engine, self.scheduler
        if engine is None:
            return status
        coords = engine.plan.coords(config.rank)
        status.kvp_rank, status.tpa_rank, status.head_slice_rank = (
            coords.kvp_rank,
            coords.group_rank,
            coords.slice_rank,
        )
        if self.loaded_model is not None:
            status.model.CopyFrom(self.loaded_model)
        cache = engine.cache
        status.kv.CopyFrom(
            shard_pb2.KvCacheUsage(
                page_size_tokens=cache.page_size,
                pages_total=cache.num_pages,
                pages_used=cache.pages_used_per_rank()[cache.kvp_rank],
                capacity_tokens=cache.num_pages * cache.page_size,
            )
        )
        if scheduler is not None:
            status.running_requests = len(scheduler.active)
            status.waiting_requests = len(scheduler.waiting)
            status.decode_steps = scheduler.decode_steps
            status.profile_every_n_steps = scheduler.profile_every_n_steps
        return status


def _reservations(engine):
    from services.shard.admission import KVReservations

    return KVReservations(engine.cache.placement, engine.cache.page_size, engine.cache.num_pages)


def model_name(config: ShardConfig) -> str:
    return config.model_name or Path(config.model_dir).resolve().name


def plan_message(plan, cfg=None) -> coordinator_pb2.ParallelPlan:
    return coordinator_pb2.ParallelPlan(
        spec=plan.spec(),
        kind=plan.kind,
        world_size=plan.world_size,
        kvp_size=plan.kvp,
        tpa_size=plan.groups,
        head_slices=plan.slices,
        ep_size=plan.ep,
        ffn_tp_size=plan.ffn_tp,
        description=plan.describe(cfg),
    )


def device_name(device: str, rank: int) -> str:
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(rank % max(1, torch.cuda.device_count()))
    return "cpu"
