"""The wallet-analysis seed (the first user of the project's design) as a Jobwire app.

What the backend hand-built with its own Redis code, the broker now does:
- a sync job per wallet fetches its transactions; a sync not started within 15 minutes is
  pointless, so it has a start deadline (`start_within`) and ends EXPIRED instead;
- each wallet gets two analyses (pnl and risk) that must not run at once: both carry the
  concurrency key `wallet:<address>` (the analysis queue's limit is 1), so no lock code;
- an analysis waits for its wallet's sync (`depends_on`) and reads the sync's result
  (`get_dependencies`), instead of re-queueing until the sync is there;
- the pnl analysis fans out price lookups to the `enrichment` queue, whose rate limit
  keeps the third-party API under its quota over every worker;
- the risk analysis's finding becomes an alert on the high-priority `alerts` queue;
- a watcher streams one analysis's progress live (the seed's websocket bridge);
- the hourly and 5-minute syncs are schedules (schedules.toml), not a cron container.

Run a broker with this example's settings and schedules, then the app:

    jobwire serve --queues examples/wallets/queues.toml --schedules examples/wallets/schedules.toml
    python examples/wallets/app.py --wallets 5

It prints the watched job's progress as it happens and, at the end, a JSON report
(`--json` prints only that). tests/test_example_wallets.py runs it against a real broker.
"""

import argparse
import asyncio
import hashlib
import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import jobwire

OPERATIONS = ("pnl", "risk")
SYNC_STALE_AFTER_S = 15 * 60  # the seed's staleAfter
PRICE_API_CALLS_PER_S = 6  # the third-party API's quota; the queue's limit stays below


class PriceAPI:
    """Stands in for the third-party price API: it answers 429 (here: RateLimited) to a
    caller over its quota, counted over the last second."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self.calls: deque[float] = deque()
        self.refused = 0

    async def price(self, token: str) -> float:
        now = time.monotonic()
        while self.calls and self.calls[0] <= now - 1.0:
            self.calls.popleft()
        if len(self.calls) >= self.per_second:
            self.refused += 1
            raise jobwire.RateLimited(1.0, "price API: 429 Too Many Requests")
        self.calls.append(now)
        await asyncio.sleep(0.01)
        return int(hashlib.sha256(token.encode()).hexdigest()[:6], 16) / 1000


def wallet_address(n: int) -> str:
    return "0x" + hashlib.sha256(str(n).encode()).hexdigest()[:40]


def tokens_of(wallet: str) -> list[str]:
    """The tokens a wallet holds (made up, but the same every run)."""
    digest = hashlib.sha256(wallet.encode()).hexdigest()
    return [f"TOKEN{digest[i : i + 2].upper()}" for i in (0, 2)]


@dataclass
class Handlers:
    client: jobwire.Client
    prices: PriceAPI = field(default_factory=lambda: PriceAPI(PRICE_API_CALLS_PER_S))
    enrichment: list[str] = field(default_factory=list)  # ids of the lookups enqueued

    async def sync(self, job: jobwire.Job) -> dict[str, Any]:
        body = job.json()
        if "wallet" not in body:  # a scheduled sync of every tracked wallet
            return {"scope": body.get("scope", ""), "full": body.get("full", False)}
        for page in (1, 2, 3):
            job.progress(page * 33, f"page {page} of 3")
            await asyncio.sleep(0.03)
        return {"wallet": body["wallet"], "transactions": 40, "synced_at": time.time()}

    async def analyse(self, job: jobwire.Job) -> dict[str, Any]:
        body = job.json()
        started = time.time()
        deps = await self.client.get_dependencies(job.id)
        synced = deps.jobs[0].result_json()
        for step, what in enumerate(("loading", "scoring", "summarising"), start=1):
            job.progress(step * 30, f"{body['operation']}: {what}")
            await asyncio.sleep(0.05)
        if body["operation"] == "pnl":  # PnL needs prices: one lookup per token
            for token in tokens_of(body["wallet"]):
                lookup = await self.client.enqueue(
                    "enrichment", {"wallet": body["wallet"], "token": token}
                )
                self.enrichment.append(lookup.job_id)
        else:
            await self.client.enqueue("alerts", {"wallet": body["wallet"], "kind": "risk"})
        job.progress(100, f"{body['operation']}: done")
        return {
            "wallet": body["wallet"],
            "operation": body["operation"],
            "transactions": synced["transactions"],
            "started": started,
            "finished": time.time(),
        }

    async def enrich(self, job: jobwire.Job) -> dict[str, Any]:
        body = job.json()
        return {"token": body["token"], "price": await self.prices.price(body["token"])}

    async def alert(self, job: jobwire.Job) -> dict[str, Any]:
        return {"sent": True, "wallet": job.json()["wallet"]}


@dataclass
class Report:
    wallets: dict[str, dict[str, Any]]  # address -> {sync, analyses}: job ids
    watched: str
    progress_seen: list[list[Any]]  # [percent, message] as the watcher saw them
    watched_state: str
    enrichment_jobs: list[str]
    price_api_refusals: int
    took_s: float


async def submit(client: jobwire.Client, wallet: str) -> dict[str, Any]:
    """A wallet's sync, and its analyses waiting for it, one at a time per wallet."""
    sync = await client.enqueue("sync", {"wallet": wallet}, start_within=SYNC_STALE_AFTER_S)
    analyses = []
    for operation in OPERATIONS:
        analysis = await client.enqueue(
            "analysis",
            {"wallet": wallet, "operation": operation},
            concurrency_key=f"wallet:{wallet}",
            depends_on=[sync.job_id],
        )
        analyses.append(analysis.job_id)
    return {"sync": sync.job_id, "analyses": analyses}


async def watch(client: jobwire.Client, job_id: str, quiet: bool) -> tuple[list[list[Any]], str]:
    """Streams one job's progress until it ends, as a dashboard's websocket would."""
    seen: list[list[Any]] = []
    state = ""
    async for event in client.watch(job_id):
        state = event.state.name
        if event.progress is not None:
            seen.append([event.progress.percent, event.progress.message])
            if not quiet:
                print(f"  {job_id}: {event.progress.percent:5.1f}% {event.progress.message}")
    return seen, state


async def settled(client: jobwire.Client, job_ids: list[str], timeout_s: float) -> None:
    """Waits until every job has ended (completed, dead, cancelled or expired)."""
    end = time.monotonic() + timeout_s
    pending = list(job_ids)
    while pending:
        if time.monotonic() > end:
            raise TimeoutError(f"{len(pending)} jobs still pending, e.g. {pending[0]}")
        pending = [j for j in pending if not (await client.get(j)).state.terminal]
        if pending:
            await asyncio.sleep(0.1)


async def run(address: str, wallets: int, quiet: bool, timeout_s: float) -> Report:
    start = time.monotonic()
    async with jobwire.Client(address) as client:
        handlers = Handlers(client)
        worker = jobwire.Worker(address, concurrency=8, lease_wait=1.0)
        worker.register("sync", handlers.sync)
        worker.register("analysis", handlers.analyse)
        worker.register("enrichment", handlers.enrich)
        worker.register("alerts", handlers.alert)
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        try:
            addresses = [wallet_address(i) for i in range(wallets)]
            submitted = {a: await submit(client, a) for a in addresses}
            watched = submitted[addresses[0]]["analyses"][0]
            watcher = asyncio.create_task(watch(client, watched, quiet))
            jobs = [j for w in submitted.values() for j in (w["sync"], *w["analyses"])]
            await settled(client, jobs, timeout_s)
            await settled(client, handlers.enrichment, timeout_s)
            progress_seen, watched_state = await asyncio.wait_for(watcher, timeout_s)
        finally:
            worker.stop()
            await running
    return Report(
        wallets=submitted,
        watched=watched,
        progress_seen=progress_seen,
        watched_state=watched_state,
        enrichment_jobs=handlers.enrichment,
        price_api_refusals=handlers.prices.refused,
        took_s=round(time.monotonic() - start, 2),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--address", default="127.0.0.1:50051", help="the broker")
    parser.add_argument("--wallets", type=int, default=5, help="how many wallets to analyse")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the jobs")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    args = parser.parse_args(argv)
    if not args.json:
        print(f"analysing {args.wallets} wallets through {args.address}; watching one:")
    report = asyncio.run(run(args.address, args.wallets, args.json, args.timeout))
    print(json.dumps(asdict(report), indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
