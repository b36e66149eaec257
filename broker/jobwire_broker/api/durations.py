"""Records how long each unary BrokerService call took, by operation, queue and outcome.
Installed only when metrics are on."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
from opentelemetry.metrics import Histogram
from opentelemetry.semconv._incubating.attributes import messaging_attributes as messaging
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.util.types import AttributeValue

from ..domain.instruments import SYSTEM

if TYPE_CHECKING:
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic only in the stubs
    Interceptor = grpc.aio.ServerInterceptor

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def _snake(method: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()


def _queue(request: Any) -> str:
    queue = getattr(request, "queue", None)
    if isinstance(queue, str):
        return queue
    job_id = getattr(request, "job_id", None)
    return job_id.rpartition(":")[0] if isinstance(job_id, str) else ""


class OperationDurations(Interceptor):
    def __init__(self, histogram: Histogram, service: str) -> None:
        self.histogram = histogram
        self.prefix = f"/{service}/"

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or handler.unary_unary is None or not method.startswith(self.prefix):
            return handler
        behavior = cast(Behavior, handler.unary_unary)  # grpc-stubs types the sync server
        return grpc.unary_unary_rpc_method_handler(
            self._timed(behavior, _snake(method[len(self.prefix) :])),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _timed(self, behavior: Behavior, operation: str) -> Behavior:
        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            try:
                return await behavior(request, context)
            finally:
                attributes: dict[str, AttributeValue] = {
                    messaging.MESSAGING_SYSTEM: SYSTEM,
                    messaging.MESSAGING_OPERATION_NAME: operation,
                }
                code = context.code()
                if code is None or code == grpc.StatusCode.OK:
                    # Only on success: a bad request must not mint a new time series.
                    queue = _queue(request)
                    if queue:
                        attributes[messaging.MESSAGING_DESTINATION_NAME] = queue
                else:
                    attributes[ERROR_TYPE] = getattr(code, "name", str(code))
                self.histogram.record(time.perf_counter() - start, attributes)

        return timed
