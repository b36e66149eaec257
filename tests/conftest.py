"""Fixtures: one real Valkey (or Redis) for the session; each test gets its own key
prefix, so tests never see each other's keys, and a real broker over real gRPC."""

from collections.abc import AsyncIterator, Iterator

import pytest
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire_broker.server import BrokerApp
from jobwire_broker.store import Store
from otlp_receiver import OtlpReceiver
from redis.asyncio import Redis
from support import RedisServer, broker_settings, running_broker, stub_for, unique_prefix


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis: Redis, prefix: str) -> Store:
    return Store(redis, prefix)


@pytest.fixture
async def broker(redis_server: RedisServer, prefix: str) -> AsyncIterator[BrokerApp]:
    async with running_broker(broker_settings(redis_server.url, prefix)) as app:
        yield app


@pytest.fixture
async def stub(broker: BrokerApp) -> AsyncIterator[rpc.BrokerServiceStub]:
    async with stub_for(broker.port) as s:
        yield s


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    """A real OTLP/gRPC receiver on 127.0.0.1:0: point OTEL_EXPORTER_OTLP_ENDPOINT at
    `otlp.endpoint` (with OTEL_EXPORTER_OTLP_PROTOCOL=grpc) and query what arrives."""
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()
