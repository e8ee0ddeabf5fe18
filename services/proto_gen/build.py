"""Regenerates the checked-in Python stubs of protos/helix/v1/*.proto with grpc_tools.protoc.

    python -m services.proto_gen.build             # rewrite services/proto_gen/helix/v1/
    python -m services.proto_gen.build --out DIR   # write the stubs under DIR instead

Needs grpcio-tools (the `test` extra). protoc names imports after the proto path
(`from helix.v1 import coordinator_pb2`), but the stubs live inside the `services.proto_gen`
package, so those imports are rewritten to `from services.proto_gen.helix.v1 import ...`.
The descriptors keep their proto-relative names ("helix/v1/coordinator.proto"), which is what
reflection clients and other languages' imports expect.
"""

from __future__ import annotations

import argparse
import importlib.resources
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
PROTO_PACKAGE_DIR = Path("helix/v1")
STUBS_ROOT = Path(__file__).resolve().parent
PYTHON_PACKAGE = "services.proto_gen"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

_PROTO_PATH_IMPORT = re.compile(r"^(from|import) helix\.v1\b", re.MULTILINE)


def proto_files() -> list[Path]:
    """The .proto files to compile, relative to PROTO_ROOT, in a stable order."""
    found = sorted(p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / PROTO_PACKAGE_DIR).glob("*.proto"))
    if not found:
        raise FileNotFoundError(f"no .proto files under {PROTO_ROOT / PROTO_PACKAGE_DIR}")
    return found


def generated_files(stubs_root: Path) -> list[Path]:
    """Generated stub files present under stubs_root, relative to it (hand-written files excluded)."""
    package_dir = stubs_root / PROTO_PACKAGE_DIR
    return sorted(
        p.relative_to(stubs_root)
        for p in package_dir.glob("*")
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    )


def _package_imports(source: str) -> str:
    return _PROTO_PATH_IMPORT.sub(rf"\1 {PYTHON_PACKAGE}.helix.v1", source)


def generate(stubs_root: Path = STUBS_ROOT) -> list[Path]:
    """Writes fresh stubs under stubs_root/helix/v1 and returns their paths relative to stubs_root.

    Earlier generated files there are removed first, so the stubs of a deleted .proto do not linger.
    """
    from grpc_tools import protoc  # lazy: grpcio-tools is a development dependency only

    stubs_root.mkdir(parents=True, exist_ok=True)
    for stale in generated_files(stubs_root):
        (stubs_root / stale).unlink()

    well_known_protos = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known_protos}",
        f"--python_out={stubs_root}",
        f"--pyi_out={stubs_root}",
        f"--grpc_python_out={stubs_root}",
        *(str(PROTO_ROOT / p) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")

    written = generated_files(stubs_root)
    for relative in written:
        path = stubs_root / relative
        path.write_text(_package_imports(path.read_text()))
    # Package markers so that a stubs_root outside the repo imports too; the checked-in ones exist.
    for package_dir in (stubs_root / PROTO_PACKAGE_DIR.parent, stubs_root / PROTO_PACKAGE_DIR):
        (package_dir / "__init__.py").touch()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=STUBS_ROOT, help="stubs root (default: %(default)s)")
    args = parser.parse_args(argv)
    for relative in generate(args.out):
        print(args.out / relative)
    return 0


if __name__ == "__main__":
    sys.exit(main())
