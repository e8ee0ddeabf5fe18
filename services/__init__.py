"""Helix serving: the gRPC coordinator and shards, the client SDK, metrics and the CLI.

Kept empty on purpose: `services.client` must import with grpcio and protobuf alone.
"""
