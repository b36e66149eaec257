"""Reads of a queue's event stream (the `qevents` key, appended to by the scripts'
job_event/qevent), for WatchQueue. Every read is bounded: one page of at most `count`
entries, plus the stream's first entry id."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from ..domain.model import QueueEvent
from . import schema
from .keys import queue_key
from .store import Store

Entries = Sequence[tuple[bytes, dict[bytes, bytes]]]
# A cursor before every entry id: XADD never issues 0-0.
ORIGIN = "0-0"


@dataclass(frozen=True, slots=True)
class Page:
    """Entries after a cursor, and the oldest entry kept when they were read ('' when
    the stream is empty or absent), read together in one MULTI, so the two agree."""

    events: list[QueueEvent]
    first_id: str


def _key(store: Store, queue: str) -> str:
    return queue_key(store.prefix, queue, "qevents")


async def last_id(store: Store, queue: str) -> str:
    """The id of the newest entry, or ORIGIN when there is none."""
    key = _key(store, queue)
    rows = cast(Entries, await store._read(lambda: store.client.xrevrange(key, count=1)))
    return rows[0][0].decode() if rows else ORIGIN


async def page_after(store: Store, queue: str, after_id: str, count: int) -> Page:
    """Up to `count` events strictly after `after_id`, oldest first."""
    key = _key(store, queue)

    async def read() -> list[Entries]:
        async with store.client.pipeline(transaction=True) as pipe:
            pipe.xrange(key, count=1)
            pipe.xrange(key, min=f"({after_id}", max="+", count=count)
            return cast(list[Entries], await pipe.execute())

    first, rows = await store._read(read)
    return Page(
        events=[schema.queue_event(entry_id.decode(), fields) for entry_id, fields in rows],
        first_id=first[0][0].decode() if first else "",
    )
