"""A running coordinator (gRPC server, link to shard rank 0, /metrics), and `helix coordinator`.

Stopping drains: health turns NOT_SERVING, new Generate calls get UNAVAILABLE, live streams get
up to the grace period to finish, then the rest are cancelled (they end with Finished{CANCELLED}).
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from services.coordinator.config import CoordinatorConfig
from services.coordinator.live_requests import LiveRequests
from services.coordinator.servicer import CoordinatorServicer
from services.coordinator.shard_link import ShardLink
from services.coordinator.tokenizer import load_tokenizer
from services.grpc_server import ServingHealth, enable_reflection, listen, new_server
from services.metrics import CoordinatorMetrics, start_metrics_server
from services.proto_gen.helix.v1 import coordinator_pb2, coordinator_pb2_grpc

log = logging.getLogger("helix.coordinator")
CANCEL_WAIT_S = 5.0  # after the grace period: time for cancelled streams to send Finished
CONTROL_THREADS = 8  # beyond max_streams, so Cancel, GetInfo and health answer however many streams are open


class Coordinator:
    def __init__(self, config: CoordinatorConfig):
        self.config = config
        self.metrics = CoordinatorMetrics.create()
        self.requests = LiveRequests()
        self.server = new_server(config.max_streams + CONTROL_THREADS)
        self.health = ServingHealth(self.server, "helix.v1.Coordinator")
        self.link = ShardLink(
            config.shard_address,
            self.requests,
            delay_s=config.inject_control_delay_ms / 1000,
            on_ready_change=self._on_ready_change,
            before_ready=self._before_ready,
        )
        tokenizer = load_tokenizer(config.tokenizer_dir) if config.tokenizer_dir else None
        if config.tokenizer_dir and tokenizer is None:
            raise FileNotFoundError(f"--tokenizer {config.tokenizer_dir}: no tokenizer files there")
        self.servicer = CoordinatorServicer(
            self.link,
            self.requests,
            self.metrics,
            tokenizer=tokenizer,
            max_new_tokens_limit=config.max_new_tokens_limit,
            max_streams=config.max_streams,
        )
        coordinator_pb2_grpc.add_CoordinatorServicer_to_server(self.servicer, self.server)
        enable_reflection(self.server, coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name)
        self.port = listen(self.server, config.host, config.port, "the coordinator's gRPC", "--port")
        self.metrics_server = None
        self._looked_for_tokenizer = bool(config.tokenizer_dir) or not config.use_checkpoint_tokenizer

    def start(self) -> "Coordinator":
        self.server.start()
        if self.config.metrics_port is not None:
            self.metrics_server = start_metrics_server(
                self.config.metrics_port, self.metrics.registry, addr=self.config.host
            )
        self.link.start()
        return self

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.port if self.metrics_server else None

    def wait_ready(self, timeout_s: float) -> bool:
        return self.link.wait_ready(timeout_s)

    def _on_ready_change(self, ready: bool) -> None:
        self.health.set_serving(ready and not self.servicer.draining)

    def _before_ready(self, status) -> None:
        """Use the checkpoint's tokenizer when this machine sees the shards' checkpoint directory
        (looked for once, before the first request can arrive)."""
        if self._looked_for_tokenizer:
            return
        self._looked_for_tokenizer = True
        if not status.model.has_tokenizer:
            return
        try:
            self.servicer.tokenizer = load_tokenizer(status.model.checkpoint_path)
        except Exception as error:  # text prompts stay unavailable; token ids still work
            log.warning("cannot load the tokenizer of %s: %s", status.model.checkpoint_path, error)

    def drain(self, grace_s: float) -> None:
        """Refuse new requests; give live ones grace_s to finish; cancel the rest."""
        self.servicer.draining = True
        self.link.stopping = True
        self.health.set_serving(False)
        deadline = time.monotonic() + grace_s
        while len(self.requests) and time.monotonic() < deadline:
            time.sleep(0.05)
        leftover = self.requests.ids()
        if leftover:
            log.info("drain: cancelling %d requests after %.0f s", len(leftover), grace_s)
            for request_id in leftover:
                self.link.cancel(request_id)
            end = time.monotonic() + CANCEL_WAIT_S
            while len(self.requests) and time.monotonic() < end:
                time.sleep(0.05)

    def stop(self) -> None:
        self.health.shutdown()
        self.server.stop(grace=1).wait(5)
        self.link.close()
        if self.metrics_server is not None:
            self.metrics_server.close()


def run_coordinator(config: CoordinatorConfig) -> int:
    coordinator = Coordinator(config).start()
    metrics = f", metrics on :{coordinator.metrics_port}/metrics" if coordinator.metrics_port else ""
    print(
        f"helix coordinator: gRPC on {config.host}:{coordinator.port}{metrics}; shard rank 0 at "
        f"{config.shard_address}",
        flush=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    print(f"helix coordinator: draining (up to {config.drain_grace_s:.0f} s)", flush=True)
    coordinator.drain(config.drain_grace_s)
    coordinator.stop()
    return 0
