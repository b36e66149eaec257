"""Requests whose bytes are not a message of their type answer INVALID_ARGUMENT, as any
other bad input does. grpcio's own handling (its deserializer raised) answers UNKNOWN,
which a client cannot tell from a broker bug, and the fuzz tests forbid.

`register` adds a generated servicer through a stand-in server that catches the method
handlers the generated code builds, wraps the unary ones, and registers those on the
real server: a decoding failure becomes a marker value, and the wrapped behaviour
aborts on it. A well-formed call pays one isinstance check."""

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ..domain.errors import FieldViolation, invalid
from .errors import abort


class _Undecodable:
    """What the wrapped deserializer returns instead of raising."""

    def __init__(self, error: str) -> None:
        self.error = error


class _Capture:
    """Takes what a generated add_*Servicer_to_server hands to a server."""

    def __init__(self) -> None:
        self.name = ""
        self.handlers: dict[str, Any] = {}  # name -> grpc.RpcMethodHandler

    def add_generic_rpc_handlers(self, _handlers: Any) -> None:
        pass  # rebuilt from the registered handlers below

    def add_registered_method_handlers(self, name: str, handlers: dict[str, Any]) -> None:
        self.name, self.handlers = name, handlers


def register(
    add_to_server: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server
) -> None:
    capture = _Capture()
    add_to_server(servicer, capture)
    handlers = {name: _wrapped(h) for name, h in capture.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.name, handlers),))
    # grpcio 1.63+ has it; its type stubs do not list it yet.
    server.add_registered_method_handlers(capture.name, handlers)  # type: ignore[attr-defined]


def _wrapped(handler: Any) -> Any:
    if handler.unary_unary is None or handler.request_deserializer is None:
        return handler  # streaming requests: left to grpcio
    return handler._replace(
        request_deserializer=_safe(handler.request_deserializer),
        unary_unary=_guarded(handler.unary_unary),
    )


def _safe(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return _Undecodable(str(exc) or "not a valid message")

    return deserialize


def _guarded(
    behaviour: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]],
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Undecodable):
            violation = FieldViolation("request", f"cannot be decoded: {request.error}")
            await abort(context, invalid([violation]))
        return await behaviour(request, context)

    return call
