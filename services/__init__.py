"""Helix serving: the gRPC coordinator and shards, the client SDK, metrics and the CLI.

Kept empty on purpose: `services.client` must import with grpcio and protobuf alone.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("helix-serve")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
