"""What every Helix gRPC server shares: options, grpc.health.v1, reflection, listening address.

Health is answered by grpc_health's servicer from gRPC's own worker threads (and a thread pool
of its own for Watch), never by the decode loop, so a busy decode step cannot starve a probe.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.client.options import server_options
from services.ports import port_unavailable


class ServingHealth:
    """The health statuses of one server: the overall "" service and its named service."""

    def __init__(self, server: grpc.Server, service_name: str):
        self._servicer = health.HealthServicer(
            experimental_non_blocking=True,
            experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"),
        )
        self._names = ("", service_name)
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)
        self.set_serving(False)

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._names:
            self._servicer.set(name, status)

    def shutdown(self) -> None:
        """Tells Watch callers the server is going away."""
        self._servicer.enter_graceful_shutdown()


def new_server(max_workers: int) -> grpc.Server:
    """A server of max_workers threads that takes at most as many calls at once: one more is refused
    with RESOURCE_EXHAUSTED at once, instead of waiting, unseen by any handler, for a thread."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=server_options(),
        maximum_concurrent_rpcs=max_workers,
    )


def enable_reflection(server: grpc.Server, full_service_name: str) -> None:
    reflection.enable_server_reflection(
        (
            full_service_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )


def listen(server: grpc.Server, host: str, port: int, purpose: str = "gRPC", flag: str = "--port") -> int:
    """Binds host:port (port 0: any free port) and returns the bound port; PortUnavailable names `flag`."""
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio 1.85 raises RuntimeError where older versions returned 0
        bound = 0
    if bound == 0:
        raise port_unavailable(host, port, purpose, flag, "in use, or not a local address")
    return bound
