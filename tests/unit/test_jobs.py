"""The job lifecycle runs, evaluations and trainings share (selfspec/jobs.py)."""

from __future__ import annotations

import asyncio

import pytest

from selfspec.jobs import JobTasks


async def test_job_tasks_start_forget_and_stop() -> None:
    jobs = JobTasks("thing")
    done = asyncio.Event()

    async def quick() -> None:
        done.set()

    async def forever() -> None:
        await asyncio.Event().wait()

    jobs.start("a", quick())
    jobs.start("b", forever())
    with pytest.raises(RuntimeError, match="thing b already has a task"):
        jobs.start("b", forever())
    await done.wait()
    await asyncio.sleep(0)  # the done callback runs on the next turn
    assert jobs.active() == ["b"] and "b" in jobs and len(jobs) == 1
    assert not await jobs.join(timeout_s=0.05)
    assert await jobs.stop(timeout_s=5) == []
    await asyncio.sleep(0)
    assert jobs.active() == []


async def test_job_tasks_stop_reports_a_task_that_will_not_end() -> None:
    jobs = JobTasks("thing")
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a job that swallows the cancel (a child that ignores SIGTERM, in effect)

    jobs.start("s", stubborn())
    await asyncio.sleep(0)
    assert await jobs.stop(timeout_s=0.05) == ["s"]
    release.set()
    assert await jobs.join(timeout_s=5)


async def test_job_tasks_resume_starts_the_interrupted_and_records_the_unstartable() -> None:
    jobs = JobTasks("thing")
    ran: list[str] = []
    failed: dict[str, str] = {}

    async def work(job_id: str) -> None:
        ran.append(job_id)

    def start(job_id: str) -> None:
        if job_id == "broken":
            raise ValueError("its stored state does not load")
        jobs.start(job_id, work(job_id))

    jobs.start("busy", work("busy"))
    resumed = jobs.resume(["busy", "broken", "x"], start=start,
                          failed=lambda job_id, err: failed.__setitem__(job_id, str(err)))
    assert resumed == ["x"]  # "busy" has a task already; "broken" could not start
    assert failed == {"broken": "its stored state does not load"}
    assert await jobs.join(timeout_s=5)
    assert sorted(ran) == ["busy", "x"]
