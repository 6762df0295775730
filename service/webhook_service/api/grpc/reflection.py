"""Server reflection under both names tools ask for: `grpc.reflection.v1`, which current grpcurl and
`buf curl` try first, and `grpc.reflection.v1alpha`, which older tools know alone.

grpcio-reflection serves v1alpha only. v1 is the same protocol under another package, its messages the
same fields with the same numbers, so one servicer answers both; a v1 descriptor, made from the v1alpha
one by renaming its package, lets reflection describe the v1 service as well.

Reflection finds a symbol's file with the descriptor pool's FindFileContainingSymbol, which in protobuf's upb
implementation knows every kind of symbol but a service's methods: `grpcurl describe
webhooks.v1.WebhookService.GetWebhook` would be "Symbol not found". The pool handed to reflection looks
methods up by themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
V1_PACKAGE = "grpc.reflection.v1"
V1ALPHA = reflection.SERVICE_NAME
V1 = V1ALPHA.replace(V1ALPHA_PACKAGE, V1_PACKAGE)


@functools.cache
def _register_v1_descriptor() -> None:
    """Adds grpc/reflection/v1/reflection.proto to the default pool, once per process."""
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name = file.name.replace("v1alpha", "v1")
    file.package = V1_PACKAGE
    # The v1alpha file's options name v1alpha's packages in other languages; v1 has its own.
    file.ClearField("options")
    old, new = f".{V1ALPHA_PACKAGE}.", f".{V1_PACKAGE}."
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, new)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    descriptor_pool.Default().AddSerializedFile(file.SerializeToString())


class _MethodsToo:
    """The default pool, finding the file of a method as well as of any other symbol."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            # Raises KeyError too when `symbol` is no method, which reflection answers with NOT_FOUND.
            return self._pool.FindMethodByName(symbol).containing_service.file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Reflection of `service_names` and of both reflection services, on `server`."""
    _register_v1_descriptor()
    servicer = reflection.aio.ReflectionServicer(
        (*service_names, V1, V1ALPHA), pool=_MethodsToo(descriptor_pool.Default())
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    same_protocol = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1, {"ServerReflectionInfo": same_protocol}),)
    )
