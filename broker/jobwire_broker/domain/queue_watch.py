"""WatchQueue: a queue's event stream from a resume point on, as it grows. Pages are
read from the store; between them the watcher sleeps until a script publishes 'q' on
the queue's events channel (lib.lua finish()), or a recheck interval passes."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..store import StoreUnavailable
from ..store.queue_events import ORIGIN, last_id, page_after
from .admin import AdminContext
from .errors import shutting_down, store_unavailable
from .model import QueueEvent

PAGE = 500  # events per read
RECHECK_S = 2.0  # read again after this long without a notification (one may be lost)
FROM_NOW = ""  # after_id: only events from now on
FROM_OLDEST = "0"  # after_id: from the oldest event kept


@dataclass(frozen=True, slots=True)
class WatchedEvent:
    """An event, and whether events between it and the one sent before it (or the
    resume point) were trimmed away before this watcher read them."""

    event: QueueEvent
    gap: bool = False


def id_order(event_id: str) -> tuple[int, int]:
    """A stream id (`<ms>-<seq>`, or `<ms>`) as a sortable pair."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


async def watch_queue(ctx: AdminContext, queue: str, after_id: str) -> AsyncIterator[WatchedEvent]:
    """Every event of `queue` after `after_id` (FROM_NOW, FROM_OLDEST, or an event id),
    in order, until the broker closes (then UNAVAILABLE: the client resumes elsewhere
    from its last event id). QUEUE_NOT_FOUND for an unknown queue."""
    await ctx.require_queue(queue)
    changed = asyncio.Event()
    channel = ctx.store.keys(queue).events_channel

    def on_message(data: bytes) -> None:
        # 'q': queue events were added. b'': pub/sub reconnected, re-read. Per-job
        # watchers' messages (job sequence numbers) share the channel and are ignored.
        if data in (b"q", b""):
            changed.set()

    await ctx.notifier.listen(channel, on_message)
    try:
        async for event in _follow(ctx, queue, after_id, changed):
            yield event
    except StoreUnavailable as exc:
        raise store_unavailable(str(exc)) from exc
    finally:
        ctx.notifier.unlisten(channel, on_message)


async def _follow(
    ctx: AdminContext, queue: str, after_id: str, changed: asyncio.Event
) -> AsyncIterator[WatchedEvent]:
    store, closing = ctx.store, ctx.broker.closing
    if after_id == FROM_NOW:
        cursor = await last_id(store, queue)
    elif after_id == FROM_OLDEST:
        cursor = ORIGIN
    else:
        cursor = after_id
    gap = False
    while not closing.is_set():
        changed.clear()
        page = await page_after(store, queue, cursor, PAGE)
        # Trimming removes the oldest entries first, so when the oldest kept entry is
        # still at or before the cursor, nothing after the cursor is missing. Past it,
        # entries between the two may have been trimmed: say so on the next event sent.
        # (ORIGIN asks for whatever is kept, so nothing counts as missed.)
        if cursor != ORIGIN and page.first_id and id_order(page.first_id) > id_order(cursor):
            gap = True
        for event in page.events:
            yield WatchedEvent(event, gap)
            gap = False
            cursor = event.id
        if len(page.events) < PAGE:
            await _wait(changed, closing, RECHECK_S)
    raise shutting_down()


async def _wait(changed: asyncio.Event, closing: asyncio.Event, seconds: float) -> None:
    """Until there is news or the broker closes, at most `seconds`."""
    if changed.is_set() or closing.is_set():
        return
    waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(closing.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
