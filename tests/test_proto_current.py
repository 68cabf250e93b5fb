"""The committed generated modules must match proto/hotlink/v1/agent.proto.

Compares descriptors (not text), so a newer grpcio-tools with different formatting does
not fail it, but any change to the .proto without regenerating does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from hotlink.v1 import agent_pb2

PROTO = Path(__file__).resolve().parents[1] / "proto"


def test_generated_descriptor_matches_proto(tmp_path: Path) -> None:
    out = tmp_path / "set.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"--descriptor_set_out={out}",
            "hotlink/v1/agent.proto",
        ],
        check=True,
    )
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (fresh,) = fds.file
    for msg in fresh.message_type:  # protoc fills json_name; generated code omits it
        for field in msg.field:
            field.ClearField("json_name")
    committed = descriptor_pb2.FileDescriptorProto.FromString(agent_pb2.DESCRIPTOR.serialized_pb)
    assert fresh == committed, "run `python proto/generate.py` and commit the result"
