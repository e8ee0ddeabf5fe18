"""The checked-in stubs under services/proto_gen/ must be what protos/ generates today."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

from services.proto_gen import build

pytest.importorskip("grpc_tools", reason="grpcio-tools (the `test` extra) regenerates the stubs")


def _grpcio_tools_version() -> str:
    return importlib.metadata.version("grpcio-tools")


def test_checked_in_stubs_match_the_protos(tmp_path):
    fresh = [str(path) for path in build.generate(tmp_path)]
    checked_in = [str(path) for path in build.generated_files(build.STUBS_ROOT)]
    how_to_fix = (
        f"run `python -m services.proto_gen.build` and commit services/proto_gen/ "
        f"(regenerated here with grpcio-tools {_grpcio_tools_version()})"
    )

    assert checked_in == fresh, f"stub files differ: checked in {checked_in}, generated {fresh}; {how_to_fix}"
    stale = [
        relative
        for relative in fresh
        if (tmp_path / relative).read_bytes() != (build.STUBS_ROOT / relative).read_bytes()
    ]
    assert not stale, f"stale stubs {stale}; {how_to_fix}"


def test_every_proto_has_its_stubs():
    expected = {
        f"{proto.stem}{suffix}" for proto in build.proto_files() for suffix in build.GENERATED_SUFFIXES
    }
    present = {path.name for path in build.generated_files(build.STUBS_ROOT)}
    assert expected == present


def test_stubs_import_as_a_package_in_a_fresh_interpreter():
    # A fresh process: proves the rewritten imports resolve without the repo's protos/ on sys.path.
    code = (
        "from services.proto_gen.helix.v1 import coordinator_pb2, coordinator_pb2_grpc, shard_pb2, "
        "shard_pb2_grpc\n"
        "assert shard_pb2.DESCRIPTOR.dependencies[0] is coordinator_pb2.DESCRIPTOR\n"
        "assert coordinator_pb2.DESCRIPTOR.name == 'helix/v1/coordinator.proto'\n"
        "assert 'Generate' in coordinator_pb2.DESCRIPTOR.services_by_name['Coordinator'].methods_by_name\n"
        "assert 'Session' in shard_pb2.DESCRIPTOR.services_by_name['Shard'].methods_by_name\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=build.REPO_ROOT, check=True, timeout=60)
