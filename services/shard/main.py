"""`helix shard`: run one shard process until it is shut down or its group fails.

The main thread only serves signals and watches; the gRPC server answers from its own threads
from the start (health NOT_SERVING until READY), and the runtime loads, joins and runs the decode
loop in another thread. On a group failure the process exits non-zero at once (after a moment to
let rank 0's Session carry the failures out), without tearing down collectives that would hang
on a dead peer; its supervisor (Kubernetes, or `helix serve`) restarts the group.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from services.shard.config import METRICS_PORT_FLAG, PORT_FLAG, ShardConfig

log = logging.getLogger("helix.shard")
FAILURE_FLUSH_S = 1.0  # lets the Session stream deliver RequestFailed before the process exits
STUCK_REPORT_S = 3.0  # the coordinator polls Status every second: it reads why before the exit
PARENT_ENV = "HELIX_PARENT_PID"  # set by a launcher: exit if that process is gone


def run_shard(config: ShardConfig) -> int:
    from services.shard.group_join import set_join_timeout

    set_join_timeout(config.join_timeout_s)  # before anything imports helix_core.comm

    from services.grpc_server import ServingHealth, enable_reflection, listen, new_server
    from services.metrics import ShardMetrics, start_metrics_server
    from services.proto_gen.helix.v1 import shard_pb2, shard_pb2_grpc
    from services.shard.runtime import ShardRuntime
    from services.shard.servicer import ShardServicer

    metrics = ShardMetrics.create(shard_rank=config.rank)
    metrics_server = None
    if config.metrics_port is not None:
        metrics_server = start_metrics_server(
            config.metrics_port, metrics.registry, addr=config.host, flag=METRICS_PORT_FLAG
        )
    runtime = ShardRuntime(config, metrics)
    server = new_server(max_workers=16)
    shard_pb2_grpc.add_ShardServicer_to_server(ShardServicer(runtime), server)
    health = ServingHealth(server, "helix.v1.Shard")
    enable_reflection(server, shard_pb2.DESCRIPTOR.services_by_name["Shard"].full_name)
    port = listen(server, config.host, config.port, f"shard {config.rank}'s gRPC", PORT_FLAG)
    server.start()
    runtime.on_ready_change = health.set_serving
    metrics_note = f", metrics on :{metrics_server.port}/metrics" if metrics_server else ""
    print(
        f"helix shard {config.rank}/{config.world_size}: gRPC on {config.host}:{port}{metrics_note}",
        flush=True,
    )

    def on_signal(signum, frame):
        log.info("rank %d: signal %d: draining", config.rank, signum)
        runtime.request_shutdown(drain=True, grace_s=config.drain_grace_s)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = threading.Thread(target=runtime.run, name="shard-runtime", daemon=True)
    worker.start()
    parent = int(os.environ.get(PARENT_ENV, "0"))
    while worker.is_alive():
        worker.join(0.5)
        if parent and os.getppid() != parent:
            log.error("rank %d: launcher %d is gone; exiting", config.rank, parent)
            os._exit(1)
        if runtime.shutdown_requested and runtime.engine is None:
            os._exit(0)  # still joining: nothing to drain, and the join could wait minutes
        stuck = runtime.stuck_step()
        if stuck:  # the runtime thread cannot return from a hung device wait: leave, to be restarted
            log.error("rank %d: %s", config.rank, stuck)
            runtime.fail_stuck(stuck)
            time.sleep(STUCK_REPORT_S)
            server.stop(0)
            os._exit(1)
    health.set_serving(False)
    code = runtime.exit_code or 0
    if code != 0:
        print(f"helix shard {config.rank}: {runtime.message}", flush=True)
        time.sleep(FAILURE_FLUSH_S)
        server.stop(0)
        os._exit(code)
    health.shutdown()
    server.stop(grace=2).wait(5)
    if metrics_server is not None:
        metrics_server.close()
    _leave_group()
    return 0


def _leave_group(timeout_s: float = 5.0) -> None:
    """Destroy the process groups, but never let a stuck teardown keep the process alive."""
    from helix_core.comm import shutdown_distributed

    done = threading.Thread(target=shutdown_distributed, daemon=True)
    done.start()
    done.join(timeout_s)
