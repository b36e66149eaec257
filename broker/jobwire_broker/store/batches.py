"""How much one script call may do. A script blocks Redis while it runs, so every call
that touches many jobs touches at most JOBS_PER_CALL of them (bulk operations, Lease,
the batch settlements and the maintenance loop), and a filtered scan looks at most at
EXAMINE_PER_CALL members. On the 2-core machine of docs/bulk-operations.md one job's
transition costs 20-100 µs of script time, so a call stays well under 50 ms even on a
busy host. The one exception is EnqueueBatch, whose documented all-or-none needs one
call for up to 1000 jobs."""

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

JOBS_PER_CALL = 50
EXAMINE_PER_CALL = 500


def chunks(items: Sequence[T], size: int = JOBS_PER_CALL) -> Iterator[Sequence[T]]:
    """`items` in order, `size` at a time."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
