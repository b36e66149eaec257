"""One pub/sub connection per broker that turns Redis messages into asyncio wake-ups.

Long-polling Leases and StreamProgress watchers wait on asyncio events here instead of
holding blocking Redis connections, so a thousand watchers cost one connection. When
the connection drops, every waiter is woken to re-check the store, then the loop
reconnects and subscribes again.
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Listener = Callable[[bytes], None]
RECONNECT_DELAY_S = 0.2
POLL_S = 0.05


async def cancel_and_wait(task: "asyncio.Task[None]") -> None:
    """Cancels a task and waits until it has ended. On Python 3.11 a cancel that lands
    as an inner wait_for finishes can be swallowed (CPython gh-86296), leaving a
    `while True` loop running, so keep cancelling until the task is done."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


class Notifier:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._confirmed: dict[str, asyncio.Event] = {}
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="jobwire-notifier")

    async def stop(self) -> None:
        if self._task:
            await cancel_and_wait(self._task)

    async def listen(self, channel: str, listener: Listener, within_s: float = 1.0) -> bool:
        """Adds a listener; returns once Redis confirmed the subscription (True), or
        after `within_s` (False: the caller must poll, as when Redis is down)."""
        self._listeners[channel].add(listener)
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            confirmed = self._confirmed[channel] = asyncio.Event()
            self._pending.add(channel)
        try:
            await asyncio.wait_for(confirmed.wait(), within_s)
        except TimeoutError:
            return False
        return True

    def unlisten(self, channel: str, listener: Listener) -> None:
        """Removes a listener. The subscription stays: queues are few and reused."""
        self._listeners[channel].discard(listener)

    async def _run(self) -> None:
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._serve(pubsub)
            except (RedisError, OSError) as exc:
                log.warning("pub/sub connection lost: %s", exc)
            finally:
                self._disconnected()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _serve(self, pubsub: PubSub) -> None:
        self._pending.update(self._confirmed)
        await pubsub.ping()
        self.connected.set()
        while True:
            if self._pending:
                channels = sorted(self._pending)
                self._pending.clear()
                await pubsub.subscribe(*channels)
            message = await pubsub.get_message(timeout=POLL_S)
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, object]) -> None:
        raw = message["channel"]
        channel = raw.decode() if isinstance(raw, bytes) else str(raw)
        if message["type"] == "subscribe":
            self._confirmed[channel].set()
        elif message["type"] == "message":
            data = message["data"]
            payload = data if isinstance(data, bytes) else str(data).encode()
            for listener in list(self._listeners.get(channel, ())):
                listener(payload)

    def _disconnected(self) -> None:
        """Forgets confirmations and wakes everyone so they re-read the store."""
        self.connected.clear()
        for channel, event in list(self._confirmed.items()):
            self._confirmed[channel] = asyncio.Event()
            event.clear()
            for listener in list(self._listeners.get(channel, ())):
                listener(b"")
