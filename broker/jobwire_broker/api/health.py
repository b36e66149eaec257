"""grpc.health.v1 with List, which the asyncio servicer of grpcio-health-checking lacks:
it inherits the generated base's, which raises and gets logged as an ERROR traceback."""

from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc, name-defined]
    """Check, Watch and set from grpcio-health-checking, plus List."""

    async def List(
        self,
        request: health_pb2.HealthListRequest,
        context: "grpc.aio.ServicerContext[Any, Any]",
    ) -> health_pb2.HealthListResponse:
        """Every service set so far, "" (the whole server) included, as grpc-go does."""
        statuses = self._server_status.items()  # the table Check reads, kept by set()
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=s) for name, s in statuses}
        )
