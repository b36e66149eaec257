"""gRPC server reflection, `grpc.reflection.v1` and `v1alpha` from one implementation, that
resolves every symbol of the default descriptor pool, methods included."""

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2 as r

# grpcio-reflection ships stubs for v1alpha only. v1 is the same file but for its package,
# so the two are the same on the wire: both services use v1alpha's messages, and v1's
# descriptor, derived from v1alpha's, goes into the pool so that v1 can be described too.
V1ALPHA = r.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1 = "grpc.reflection.v1.ServerReflection"
SERVICE_NAMES = (V1, V1ALPHA)
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable_reflection(
    server: grpc.aio.Server, service_names: Iterable[str], versions: Iterable[str] = SERVICE_NAMES
) -> None:
    """Serves reflection (both versions unless told), listing `service_names` and itself."""
    versions = tuple(versions)
    pool = descriptor_pool.Default()
    _add_v1_descriptor(pool)
    reflection = Reflection((*service_names, *versions), pool)
    method = grpc.stream_stream_rpc_method_handler(
        reflection.ServerReflectionInfo,
        request_deserializer=r.ServerReflectionRequest.FromString,
        response_serializer=r.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": method})
            for name in versions
        ]
    )


class Reflection:
    """Answers each request of a reflection stream from a descriptor pool."""

    def __init__(self, service_names: Iterable[str], pool: descriptor_pool.DescriptorPool) -> None:
        self._services = sorted(set(service_names))
        self._pool = pool

    async def ServerReflectionInfo(
        self,
        requests: AsyncIterator[r.ServerReflectionRequest],
        context: "grpc.aio.ServicerContext[Any, Any]",
    ) -> AsyncIterator[r.ServerReflectionResponse]:
        async for request in requests:
            yield self.answer(request)

    def answer(self, request: r.ServerReflectionRequest) -> r.ServerReflectionResponse:
        response = r.ServerReflectionResponse(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        try:
            if kind is None:
                return _error(response, grpc.StatusCode.INVALID_ARGUMENT, "empty request")
            if kind == "list_services":
                response.list_services_response.service.extend(
                    r.ServiceResponse(name=name) for name in self._services
                )
            elif kind == "all_extension_numbers_of_type":
                message = self._pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = response.all_extension_numbers_response
                numbers.base_type_name = message.full_name
                numbers.extension_number.extend(
                    sorted(ext.number for ext in self._pool.FindAllExtensions(message))
                )
            else:
                files = _with_dependencies(self._file(request))
                response.file_descriptor_response.file_descriptor_proto.extend(files)
        except KeyError as missing:
            return _error(response, grpc.StatusCode.NOT_FOUND, str(missing.args[0]))
        return response

    def _file(self, request: r.ServerReflectionRequest) -> FileDescriptor:
        if request.HasField("file_by_filename"):
            return self._pool.FindFileByName(request.file_by_filename)
        if request.HasField("file_containing_extension"):
            wanted = request.file_containing_extension
            message = self._pool.FindMessageTypeByName(wanted.containing_type)
            extension = self._pool.FindExtensionByNumber(message, wanted.extension_number)
            return self._pool.FindFileContainingSymbol(extension.full_name)
        return self._file_containing_symbol(request.file_containing_symbol)

    def _file_containing_symbol(self, symbol: str) -> FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            # upb's FindFileContainingSymbol (python/upb protobuf) looks a name up among
            # messages, enums, enum values, extensions and services, then among the
            # members of a message, never among a service's methods.
            service, _, method = symbol.rpartition(".")
            with contextlib.suppress(KeyError):
                found = self._pool.FindServiceByName(service)
                if method in found.methods_by_name:
                    return found.file
            raise


def _with_dependencies(file: FileDescriptor) -> list[bytes]:
    """The file first, then everything it imports, transitively, as clients need them."""
    files = {file.name: file}
    pending = [file]
    while pending:
        for dependency in pending.pop().dependencies:
            if dependency.name not in files:
                files[dependency.name] = dependency
                pending.append(dependency)
    return [found.serialized_pb for found in files.values()]


def _error(
    response: r.ServerReflectionResponse, code: grpc.StatusCode, message: str
) -> r.ServerReflectionResponse:
    response.error_response.error_code = code.value[0]
    response.error_response.error_message = message
    return response


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(_V1_FILE)
    except KeyError:
        pool.AddSerializedFile(_v1_descriptor())


def _v1_descriptor() -> bytes:
    """v1alpha's file moved to package grpc.reflection.v1, with v1's language options."""
    proto = descriptor_pb2.FileDescriptorProto.FromString(r.DESCRIPTOR.serialized_pb)
    old, new = f".{proto.package}.", ".grpc.reflection.v1."
    proto.name, proto.package = _V1_FILE, new.strip(".")
    proto.options.ClearField("deprecated")
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, new)
    for rpc in proto.service[0].method:
        rpc.input_type = rpc.input_type.replace(old, new)
        rpc.output_type = rpc.output_type.replace(old, new)
    return proto.SerializeToString()
