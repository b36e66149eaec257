"""Open-loop producer for the latency figure: enqueues N jobs at a fixed rate, each
stamped with its wall-clock enqueue time, whatever the replies take (a separate
process, as docs/benchmark.md asks).

    python bench/_producer.py TARGET QUEUE N RATE
"""

import asyncio
import sys
import time

from core import payload
from jobwire import Client


async def main(target: str, queue: str, n: int, rate: float) -> None:
    async with Client(target) as client:
        start = time.perf_counter()
        pending = set()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(
                client.enqueue(queue, payload(i), content_type="application/json")
            )
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
