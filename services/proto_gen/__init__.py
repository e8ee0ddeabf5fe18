"""Python stubs generated from protos/helix/v1/*.proto, checked in.

Import them as `services.proto_gen.helix.v1.coordinator_pb2` (and `_pb2_grpc`, `shard_pb2`...).
Regenerate after editing a .proto with `python -m services.proto_gen.build`;
tests/test_protos_fresh.py fails while the checked-in stubs are stale.
"""
