"""What every part of the admin service shares: the store, the notifier, the broker
(whose long-polls ResumeQueue wakes), the broker's defaults, and the queue check."""

from dataclasses import dataclass

from ..store import Store
from ..store.notify import Notifier
from .broker import Broker, store_errors
from .errors import queue_not_found
from .limits import Defaults
from .model import Retention


@dataclass
class AdminContext:
    store: Store
    notifier: Notifier
    broker: Broker
    defaults: Defaults
    retention: Retention

    @store_errors
    async def require_queue(self, queue: str) -> None:
        """Raises QUEUE_NOT_FOUND unless the queue exists (is in the registry)."""
        if not await self.store.queue_exists(queue):
            raise queue_not_found(queue)
