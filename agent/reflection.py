"""gRPC server reflection under both service names: `grpc.reflection.v1` and `v1alpha`.

Current clients (grpcurl, grpcui, Postman, grpc-java/go reflection clients) ask for
`grpc.reflection.v1.ServerReflection` first and older ones only know `v1alpha`.
grpcio-reflection ships only the v1alpha service. The two protos are the same messages
under another package name (v1 is v1alpha promoted, field numbers unchanged), so the
same servicer answers both: the v1 method is registered as a generic handler that
(de)serializes with the v1alpha message classes, which read and write the identical
wire format.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as rpb

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1ALPHA_SERVICE = reflection.SERVICE_NAME


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection for `service_names` (plus both reflection services) on `server`."""
    names = (*service_names, V1_SERVICE, V1ALPHA_SERVICE)
    reflection.enable_server_reflection(names, server)
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.method_handlers_generic_handler(
        V1_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=rpb.ServerReflectionRequest.FromString,
                response_serializer=rpb.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
