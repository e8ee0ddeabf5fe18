"""The coordinator: the public Coordinator gRPC service in front of one shard group.

It validates requests (what needs no engine), forwards admissions to shard rank 0 over one
Session stream, and fans the tokens rank 0 streams back out to each request's Generate stream.
"""
