"""The Python SDK's schedule calls against a real broker: `Admin.schedules` (asyncio) and
`SyncAdmin.schedules` (blocking), every ScheduleService method and its errors."""

import asyncio

import pytest
from jobwire import (
    Admin,
    AlreadyExists,
    CatchUpPolicy,
    InvalidArgument,
    NotFound,
    OverlapPolicy,
    Schedule,
    SyncAdmin,
    job_spec,
)
from jobwire_broker.server import BrokerApp


async def test_admin_schedules(broker: BrokerApp) -> None:
    async with Admin(f"127.0.0.1:{broker.port}") as admin:
        made = await admin.schedules.create(
            Schedule(
                "hourly-sync",
                "sync",
                job=job_spec({"full": False}),
                cron="0 * * * *",
                time_zone="America/New_York",
                overlap=OverlapPolicy.SKIP,
                catch_up=CatchUpPolicy.ALL,
                catch_up_limit=5,
            )
        )
        assert made.overlap is OverlapPolicy.SKIP and made.catch_up is CatchUpPolicy.ALL
        assert len(made.next_run_times) == 5 and made.created_at is not None
        assert [n.minute for n in made.next_run_times] == [0] * 5
        assert await admin.schedules.get("hourly-sync") == made
        assert [s.name for s in await admin.schedules.list("sync")] == ["hourly-sync"]
        changed = await admin.schedules.update(
            Schedule("hourly-sync", "sync", interval=300), fields=["interval"]
        )
        assert changed.interval == 300 and changed.cron == ""
        assert (await admin.schedules.pause("hourly-sync")).paused
        assert not (await admin.schedules.resume("hourly-sync")).paused
        with pytest.raises(InvalidArgument) as bad:
            await admin.schedules.create(Schedule("x", "sync", cron="61 * * * *"))
        assert [v.field for v in bad.value.violations] == ["schedule.cron"]
        with pytest.raises(AlreadyExists) as taken:
            await admin.schedules.create(Schedule("hourly-sync", "sync", interval=60))
        assert taken.value.reason == "SCHEDULE_EXISTS"
        await admin.schedules.delete("hourly-sync")
        with pytest.raises(NotFound):
            await admin.schedules.get("hourly-sync")


async def test_sync_admin_schedules(broker: BrokerApp) -> None:
    def run() -> None:
        with SyncAdmin(f"127.0.0.1:{broker.port}") as admin:
            made = admin.schedules.create(Schedule("every-5", "q", interval=5))
            assert made.interval == 5 and len(made.next_run_times) == 5
            assert admin.schedules.get("every-5") == made
            assert [s.name for s in admin.schedules.list()] == ["every-5"]
            assert admin.schedules.update(made, fields=["catch_up_limit"]).catch_up_limit == 100
            assert admin.schedules.pause("every-5").paused
            assert not admin.schedules.resume("every-5").paused
            admin.schedules.delete("every-5")
            with pytest.raises(NotFound):
                admin.schedules.delete("every-5")

    await asyncio.to_thread(run)
