"""The one place where errors become gRPC statuses, with google.rpc rich details:
ErrorInfo on every error, BadRequest for invalid input, RetryInfo for UNAVAILABLE."""

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from jobwire.v1 import broker_service_pb2 as pb

from ..domain.errors import ErrorCode, JobwireError, Reason

log = logging.getLogger(__name__)
DOMAIN = "jobwire.dev"
RETRY_DELAY_S = 1

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")

GRPC_CODES = {
    ErrorCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: code_pb2.NOT_FOUND,
    ErrorCode.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    ErrorCode.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
    ErrorCode.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
}


def item_status(err: JobwireError | None) -> pb.ItemStatus:
    """One batch item's status: OK, or the code and reason its error would have had."""
    if err is None:
        return pb.ItemStatus(code=code_pb2.OK)
    return pb.ItemStatus(code=GRPC_CODES[err.code], reason=err.reason, message=err.message)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(err: JobwireError) -> status_pb2.Status:
    details = [_pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN))]
    if err.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in err.violations
                    ]
                )
            )
        )
    if err.retryable and err.code in (ErrorCode.UNAVAILABLE, ErrorCode.RESOURCE_EXHAUSTED):
        details.append(
            _pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=RETRY_DELAY_S)))
        )
    if err.code is ErrorCode.FAILED_PRECONDITION:
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=err.reason, subject=err.subject, description=err.message
                        )
                    ]
                )
            )
        )
    return status_pb2.Status(code=GRPC_CODES[err.code], message=err.message, details=details)


async def abort(context: grpc.aio.ServicerContext[Any, Any], err: JobwireError) -> None:
    status = rpc_status.to_status(rich_status(err))
    await context.abort(status.code, status.details, status.trailing_metadata)


async def abort_internal(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    log.exception("unexpected error", exc_info=exc)
    rich = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error: {type(exc).__name__}",
        details=[_pack(error_details_pb2.ErrorInfo(reason=Reason.INTERNAL, domain=DOMAIN))],
    )
    status = rpc_status.to_status(rich)
    await context.abort(status.code, status.details, status.trailing_metadata)


async def _abort_for(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    """Ends the call with the status for `exc`; aborts already under way pass through."""
    if isinstance(exc, JobwireError):
        await abort(context, exc)
    elif isinstance(exc, grpc.aio.AbortError):
        raise exc
    else:
        await abort_internal(context, exc)


def unary(
    fn: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Wraps a unary handler so domain errors leave as rich statuses."""

    @functools.wraps(fn)
    async def handler(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        try:
            return await fn(self, request, context)
        except Exception as exc:
            await _abort_for(context, exc)
        raise AssertionError("abort returned")  # pragma: no cover

    return handler


def streaming(
    fn: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """The same for server-streaming handlers."""

    @functools.wraps(fn)
    async def handler(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        try:
            async for item in fn(self, request, context):
                yield item
        except Exception as exc:
            await _abort_for(context, exc)

    return handler
