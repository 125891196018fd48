"""Two controller processes, one scale-set pool, the leader killed mid-burst: the standby
never opens a second session, waits out the dead leader's one, gets the messages it did not
acknowledge, and every job is served."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox.scenario import Sandbox
from reconciler.sandbox.server import MotoServer
from reconciler.sandbox.world import GitHubWorld

from .conftest import platform_pool_alone, wait_for
from .test_ha import leader, start, status

pytestmark = pytest.mark.e2e  # starts servers or processes

LABELS = ("self-hosted", "linux", "x64", "dind")


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    return platform_pool_alone(
        tmp_path,
        ("    maxPerRepository: 10\n", ""),
        ("  deletionPolicy: Drain", "  deletionPolicy: Drain\n  demand:\n    source: scaleSet"),
    )


@pytest.fixture
def sandbox(specs: Path, moto_server: MotoServer) -> Iterator[Sandbox]:
    with Sandbox([specs], server=moto_server, github=True) as running:
        assert running.github is not None
        running.github.actions.poll_timeout = 1.0
        running.github.actions.session_idle_timeout = 3.0  # a dead holder's session lapses
        yield running


def test_leader_killed_mid_burst_every_job_served_one_session_at_a_time(
    sandbox: Sandbox, specs: Path
) -> None:
    assert sandbox.github is not None
    actions = sandbox.github.actions
    first, first_url = start(sandbox, specs, "first")
    second = None
    try:
        wait_for(lambda: leader(first_url), 30)
        wait_for(lambda: actions.session_owners == ["first"], 30)
        second, second_url = start(sandbox, specs, "second")
        wait_for(lambda: status(second_url)["controller"]["cycles"] >= 2, 30)
        assert not leader(second_url)
        assert actions.session_owners == ["first"] and actions.conflicts == 0

        world = GitHubWorld(sandbox.github, sandbox.clients(), ["ci-runners"], None, b"")
        jobs = world.queue_jobs("platform/api", LABELS, 30, duration=2.0)
        assert all(job.request_id is not None for job in jobs)

        def tick_until(condition: object, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                world.tick()
                if condition():  # type: ignore[operator]
                    return
                time.sleep(0.2)
            done = sum(1 for job in jobs if job.completed_at)
            pytest.fail(f"timed out: {done}/{len(jobs)} done, sessions {actions.session_owners}")

        tick_until(lambda: sum(1 for job in jobs if job.started_at) >= 5, 60)
        first.kill()  # mid-burst: messages in flight stay unacknowledged
        first.wait()
        tick_until(lambda: all(job.completed_at for job in jobs), 120)
        assert not world.interrupted
        assert len({job.runner for job in jobs}) == 30
        # the standby took over only once the dead leader's session had lapsed
        assert actions.session_owners == ["first", "second"]
        assert leader(second_url)
        scale_set_id = actions.scale_sets("/orgs/platform")[0]["id"]
        wait_for(lambda: actions.unacknowledged(scale_set_id) == [], 10)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
