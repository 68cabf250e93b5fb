"""Regenerate the Python gRPC modules from proto/hotlink/v1/agent.proto.

The generated files live next to the .proto and are committed (marked GENERATED);
tests/test_proto_current.py fails when they no longer match the .proto.
Run: python proto/generate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from grpc_tools import protoc
except ImportError:  # a build-time tool, not a runtime dependency
    sys.exit("proto/generate.py needs grpcio-tools: pip install -e '.[dev]' (or '.[test]')")

HERE = Path(__file__).resolve().parent


def generate(out: Path = HERE) -> None:
    args = [
        "grpc_tools.protoc",
        f"-I{HERE}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(HERE / "hotlink" / "v1" / "agent.proto"),
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


if __name__ == "__main__":
    generate()
