"""examples/wallets (the wallet-analysis seed) run as a user would: `jobwire serve` with the
example's queues and schedules files, then `python examples/wallets/app.py`, both real
processes over real gRPC and Valkey. The checks read the broker, not the app's word:
settings applied, schedules armed, analyses after their sync and never two of one
wallet at once, the enrichment queue under its rate limit, and live progress seen."""

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import jobwire
import pytest
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from support import ROOT, BrokerProcess, RedisServer

EXAMPLE = ROOT / "examples" / "wallets"
WALLETS = 6


@pytest.fixture
def served(redis_server: RedisServer, prefix: str) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(
        *("--redis-url", redis_server.url, "--key-prefix", prefix),
        *("--queues", str(EXAMPLE / "queues.toml")),
        *("--schedules", str(EXAMPLE / "schedules.toml")),
    )
    try:
        yield broker
    finally:
        assert broker.terminate() == 0


@pytest.fixture
def report(served: BrokerProcess) -> dict[str, object]:
    run = subprocess.run(
        [
            *(sys.executable, str(EXAMPLE / "app.py"), "--json", "--wallets", str(WALLETS)),
            *("--address", f"127.0.0.1:{served.port}", "--timeout", "90"),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def address(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.port}"


async def test_the_queues_get_their_own_settings_and_the_schedules_are_armed(
    served: BrokerProcess,
) -> None:
    async with jobwire.Admin(address(served)) as admin:
        queues = {q.name: q.settings for q in await admin.list_queues()}
        assert queues["analysis"].concurrency_limit == 1
        limit = queues["enrichment"].rate_limit
        assert limit is not None and (limit.limit, limit.period) == (5, 1.0)
        assert queues["sync"].max_attempts == 5 and queues["sync"].keep_completed == 50
        assert queues["alerts"].priority == 10
        schedules = {s.name: s for s in await admin.schedules.list()}
    now = datetime.now(UTC)
    hourly, five = schedules["hourly-full-sync"], schedules["incremental-sync"]
    assert (hourly.queue, hourly.cron, five.queue) == ("sync", "0 * * * *", "sync")
    assert now < hourly.next_run_times[0] <= now + timedelta(hours=1)
    assert hourly.next_run_times[0].minute == 0
    assert now < five.next_run_times[0] <= now + timedelta(minutes=5, seconds=1)


async def test_the_seed_scenario_runs_as_its_backend_needs(
    served: BrokerProcess, report: dict[str, object]
) -> None:
    wallets: dict[str, dict[str, object]] = report["wallets"]  # type: ignore[assignment]
    assert len(wallets) == WALLETS
    async with (
        jobwire.Client(address(served)) as client,
        grpc.aio.insecure_channel(address(served)) as channel,
    ):
        stub = rpc.BrokerServiceStub(channel)
        for jobs in wallets.values():
            sync = await client.get(str(jobs["sync"]))
            assert sync.state == jobwire.JobState.COMPLETED
            raw = await stub.GetJob(pb.GetJobRequest(job_id=sync.id))
            assert raw.job.spec.HasField("start_deadline"), "a stale sync is pointless"
            analyses = [await client.get(str(j)) for j in jobs["analyses"]]  # type: ignore[attr-defined]
            assert [a.state for a in analyses] == [jobwire.JobState.COMPLETED] * 2
            # Each analysis ran after its wallet's sync finished, and read its result.
            for a in analyses:
                assert a.started_at and sync.finished_at and a.started_at >= sync.finished_at
                assert a.result_json()["transactions"] == 40
            # The two analyses of one wallet never ran at once (broker times).
            first, second = sorted(
                analyses, key=lambda a: a.started_at or datetime.max.replace(tzinfo=UTC)
            )
            assert first.finished_at and second.started_at
            assert second.started_at >= first.finished_at

        enrichment = [await client.get(j) for j in report["enrichment_jobs"]]  # type: ignore[attr-defined]
        assert len(enrichment) == 2 * WALLETS
        assert all(j.state == jobwire.JobState.COMPLETED for j in enrichment)
        starts = sorted(j.started_at.timestamp() for j in enrichment if j.started_at)
        busiest = max(sum(1 for t in starts[i:] if t < s + 1.0) for i, s in enumerate(starts))
        assert busiest <= 5, f"{busiest} enrichment leases in one second (limit 5/s)"
        # The API counts calls in its own clock when they arrive, so a lease's network and
        # scheduling jitter can still trip it now and then: such a job is handed back by
        # RateLimited (rate_limit_delay), uncounted, and completes on its next lease.
        refused: int = report["price_api_refusals"]  # type: ignore[assignment]
        assert refused <= 2, (
            f"the API refused {refused} calls: the queue's limit should keep it under"
        )
        assert all(j.counted_attempts == 1 for j in enrichment)
        assert sum(j.attempt for j in enrichment) == len(enrichment) + refused

    async with jobwire.Admin(address(served)) as admin:
        alerts = await admin.get_queue("alerts")
        assert alerts.counts.completed == WALLETS  # one risk alert per wallet

    # The watcher saw the analysis's progress live, in order, to the end.
    seen: list[list[object]] = report["progress_seen"]  # type: ignore[assignment]
    percents = [float(p[0]) for p in seen]  # type: ignore[arg-type]
    assert percents and percents == sorted(percents) and percents[-1] == 100
    assert report["watched_state"] == "COMPLETED"
