"""Runs each step of a server-streaming handler in one Context of its own, so the
OpenTelemetry gRPC interceptor's context attach and detach always meet.

That interceptor wraps a streaming handler in an async generator that attaches the
span's context before the first response and detaches it after the last, holding a
contextvars token across every yield. When grpc.aio stops iterating without closing the
generator (a watcher that goes away mid-stream), Python's async-generator finalizer
closes it later in a fresh task, whose Context did not create the token: the detach
fails ("Failed to detach context", ValueError in the log) and the wrong context stays
current. Stepping the handler, and closing it, always in the same Context avoids that.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc

if TYPE_CHECKING:
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic only in the stubs
    Interceptor = grpc.aio.ServerInterceptor

StreamBehavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]
END = object()


class StreamSteps(Interceptor):
    """Put it before the OpenTelemetry interceptor, so it wraps what that one returns."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None or handler.unary_stream is None:
            return handler
        behavior = cast(StreamBehavior, handler.unary_stream)  # grpc-stubs types the sync API
        return grpc.unary_stream_rpc_method_handler(
            in_own_context(behavior),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def in_own_context(behavior: StreamBehavior) -> StreamBehavior:
    async def stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        responses = behavior(request, context)
        steps = contextvars.copy_context()

        async def step() -> Any:
            try:
                return await anext(responses)
            except StopAsyncIteration:
                return END

        try:
            while (response := await asyncio.create_task(step(), context=steps)) is not END:
                yield response
        finally:
            # Wherever this runs (even in the finalizer's task), the handler closes in
            # the Context its span context was attached in.
            await asyncio.create_task(_close(responses), context=steps)

    return stream


async def _close(responses: AsyncIterator[Any]) -> None:
    close = getattr(responses, "aclose", None)
    if close is not None:
        await close()
