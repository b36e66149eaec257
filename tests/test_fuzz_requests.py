"""Fuzzing of request decoding and validation (issue 14, "Proof"): Hypothesis builds
requests for every unary RPC of BrokerService and AdminService from the protos'
descriptors (any field set or not, edge and random values, nested messages, lists and
maps, unknown enum numbers, out-of-range durations), and raw bytes that may not even
parse, and sends them to a real broker over real gRPC. No call may end INTERNAL or
UNKNOWN, and a call refused INVALID_ARGUMENT must have written nothing.

The maintenance loop is slowed to a crawl so that the only writer is the call itself.
JOBWIRE_FUZZ_EXAMPLES sets the examples per RPC (CI: the default below)."""

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobwire.v1 import admin_service_pb2, broker_service_pb2
from jobwire_broker.domain.maintenance import MaintenanceSettings
from redis.asyncio import Redis
from support import RedisServer, broker_settings, running_broker, unique_prefix
from test_bad_input import DOMAIN, call_error, snapshot

EXAMPLES = int(os.environ.get("JOBWIRE_FUZZ_EXAMPLES", "60"))
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
CALL_TIMEOUT_S = 1.0  # a long-poll Lease with a random wait just times out

SERVICES = [
    broker_service_pb2.DESCRIPTOR.services_by_name["BrokerService"],
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"],
]
UNARY: list[MethodDescriptor] = [
    m
    for service in SERVICES
    for m in service.methods
    if not m.client_streaming and not m.server_streaming
]
UNARY_BY_NAME = {m.name: m for m in UNARY}

T = FieldDescriptor
INT_RANGES = {
    T.TYPE_INT32: (-(2**31), 2**31 - 1),
    T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    T.TYPE_INT64: (-(2**63), 2**63 - 1),
    T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    T.TYPE_UINT32: (0, 2**32 - 1),
    T.TYPE_FIXED32: (0, 2**32 - 1),
    T.TYPE_UINT64: (0, 2**64 - 1),
    T.TYPE_FIXED64: (0, 2**64 - 1),
}
# Words the broker gives meaning to, so that some requests get past the first check.
WORDS = ["q", "fuzz", "q:1", "fuzz:1", "", " ", "a" * 300, "\u00e9", "*", "max_attempts"]


def integers(kind: int) -> st.SearchStrategy[int]:
    low, high = INT_RANGES[kind]
    return st.one_of(
        st.sampled_from([0, 1, -1 if low < 0 else 2, low, high]), st.integers(low, high)
    )


def scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    if f.type in INT_RANGES:
        return integers(f.type)
    if f.type == T.TYPE_BOOL:
        return st.booleans()
    if f.type in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
        return st.floats(
            allow_nan=True, allow_infinity=True, width=32 if f.type == T.TYPE_FLOAT else 64
        )
    if f.type == T.TYPE_STRING:
        return st.one_of(st.sampled_from(WORDS), st.text(max_size=40))
    if f.type == T.TYPE_BYTES:
        return st.one_of(st.just(b'{"a":1}'), st.binary(max_size=64))
    assert f.type == T.TYPE_ENUM
    numbers = [v.number for v in f.enum_type.values]
    return st.one_of(st.sampled_from(numbers), st.integers(-3, max(numbers) + 3))


def value(f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if f.type == T.TYPE_MESSAGE:
        if depth >= 3:
            return None
        return message(f.message_type, depth + 1)
    return scalar(f)


@st.composite
def message(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    """A message of `descriptor` with a random subset of its fields set."""
    out = GetMessageClass(descriptor)()
    for f in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            fill_map(draw, getattr(out, f.name), f, depth)
        else:
            fill(draw, out, f, depth)
    return out


def fill_map(draw: st.DrawFn, target: Any, f: FieldDescriptor, depth: int) -> None:
    key_f, value_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
    inner = value(value_f, depth)
    if inner is None:
        return
    for k, v in draw(st.dictionaries(scalar(key_f), inner, max_size=3)).items():
        if value_f.type == T.TYPE_MESSAGE:
            target[k].CopyFrom(v)
        else:
            target[k] = v


def fill(draw: st.DrawFn, out: Message, f: FieldDescriptor, depth: int) -> None:
    strategy = value(f, depth)
    if strategy is None:
        return
    if f.is_repeated:
        target = getattr(out, f.name)
        for item in draw(st.lists(strategy, max_size=3)):
            if f.type == T.TYPE_MESSAGE:
                target.add().CopyFrom(item)
            else:
                target.append(item)
    elif f.type == T.TYPE_MESSAGE:
        getattr(out, f.name).CopyFrom(draw(strategy))
    else:
        setattr(out, f.name, draw(strategy))


@dataclasses.dataclass
class Target:
    channel: grpc.aio.Channel
    redis: Redis
    prefix: str


@pytest.fixture
async def target(redis_server: RedisServer) -> AsyncIterator[Target]:
    prefix = unique_prefix()
    settings_ = broker_settings(
        redis_server.url, prefix, maintenance=MaintenanceSettings(interval_s=3600.0)
    )
    redis = Redis.from_url(redis_server.url)
    async with (
        running_broker(settings_) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel,
    ):
        yield Target(channel, redis, prefix)
    await redis.aclose()


def path(m: MethodDescriptor) -> str:
    return f"/{m.containing_service.full_name}/{m.name}"


async def call(t: Target, m: MethodDescriptor, body: bytes) -> grpc.StatusCode:
    rpc = t.channel.unary_unary(path(m))
    try:
        await rpc(body, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def check(t: Target, m: MethodDescriptor, body: bytes) -> None:
    before = await snapshot(t.redis, t.prefix)
    code = await call(t, m, body)
    assert code not in BAD, f"{m.name} answered {code.name} to {body!r}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        after = await snapshot(t.redis, t.prefix)
        assert after == before, f"{m.name} refused {body!r} but wrote to Redis"


async def fuzz(t: Target, m: MethodDescriptor, strategy: st.SearchStrategy[bytes]) -> None:
    """Runs the examples in a thread (Hypothesis is synchronous), each call on this loop."""
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(strategy)
    def one(body: bytes) -> None:
        asyncio.run_coroutine_threadsafe(check(t, m, body), loop).result(30)

    await asyncio.to_thread(one)
    # The broker still answers, and still validates.
    code = await call(t, UNARY_BY_NAME["GetJob"], b"")
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("method", UNARY, ids=lambda m: m.name)
async def test_structured_requests_never_end_internal(
    target: Target, method: MethodDescriptor
) -> None:
    await fuzz(target, method, message(method.input_type).map(lambda m: m.SerializeToString()))


@pytest.mark.parametrize("method", UNARY, ids=lambda m: m.name)
async def test_raw_bytes_never_end_internal(target: Target, method: MethodDescriptor) -> None:
    await fuzz(target, method, st.binary(max_size=200))


def test_every_unary_rpc_is_fuzzed() -> None:
    assert {"Enqueue", "Lease", "Complete", "UpdateQueue", "ListJobs", "RetryJobs"} <= set(
        UNARY_BY_NAME
    )


async def test_undecodable_bytes_are_invalid_argument_naming_the_request(target: Target) -> None:
    """What the fuzzing first found: grpcio answered UNKNOWN to bytes that are not a
    message of the request's type (b"\\x00": field number 0)."""
    rpc = target.channel.unary_unary("/jobwire.v1.BrokerService/Enqueue")
    before = await snapshot(target.redis, target.prefix)
    err = await call_error(rpc(b"\x00", timeout=5))
    assert (err.code, err.reason, err.domain) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        DOMAIN,
    )
    assert err.fields == ["request"]
    assert await snapshot(target.redis, target.prefix) == before
