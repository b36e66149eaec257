"""The Redis client the broker uses. Commands are packed by hiredis' C packer: a batch
enqueue is one EVALSHA with ~13 arguments per job, and redis-py's asyncio client packs
in pure Python, which halved batch throughput.

Stale connections: after Redis restarts, every pooled socket points at the dead server.
The pool checks each connection as it hands it out (`can_read`: pending data or EOF
means reconnect before sending anything), and here that check asks the kernel, so it
holds even before the event loop has noticed the server's FIN."""

import select
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry


class HiredisPackingConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        # Multi-word command names ("SCRIPT LOAD") go to the server as separate words.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a type hiredis does not pack (memoryview, ...)
            return super().pack_command(*args)

    async def can_read(self) -> bool:
        """True when the idle socket is readable: the server closed it (EOF) or sent
        something unasked. Either way the pool reconnects before using it."""
        return _readable(self._writer) or await super().can_read()


def _readable(writer: Any) -> bool:
    sock = writer and writer.transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return False
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    return bool(readable)


def redis_client(url: str, max_connections: int, timeout_s: float) -> Redis:
    """A pooled client. No automatic retries: a retried script could apply twice, so
    callers get UNAVAILABLE and retry with their own idempotency. rediss:// and unix://
    URLs keep redis-py's TLS and socket connection classes."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        connection_class=HiredisPackingConnection,
        # redis-py's default ("auto") skips the pool's stale-connection check at
        # checkout; the notifications are for managed-cluster failovers we do not use.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return Redis(connection_pool=pool)
