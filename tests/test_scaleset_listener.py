"""The scale-set listener against the simulated GitHub + Actions service (no AWS): one
session across replicas, acknowledge after recording, 401 refresh, re-creation, backoff."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from reconciler import fencing
from reconciler.demand.scaleset import ScaleSetDemand, ScaleSetListener, ScaleSetListeners
from reconciler.github import GitHubClient, Scope, TokenAuth
from reconciler.github.scaleset.messages import ScaleSetMessage
from reconciler.github.scaleset.pools import ScaleSetPool, ScaleSetPools
from reconciler.sandbox.github_server import FakeGitHub

from .conftest import wait_for

pytestmark = pytest.mark.e2e  # starts servers

ORG = "/orgs/acme"
POOL = ScaleSetPool("pool-a", Scope("organization", "acme"), "Default", ("pool-a",), 0, 25)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=["t"]) as server:
        server.actions.poll_timeout = 0.2
        yield server


def pools_for(github: FakeGitHub) -> ScaleSetPools:
    rest = GitHubClient(github.url, TokenAuth("t"), sleep=lambda _: None)
    pools = ScaleSetPools(rest, sleep=lambda _: None, max_retries=1)
    pools.set_pools({POOL.name: POOL})
    return pools


def listener_for(
    github: FakeGitHub, owner: str, demand: ScaleSetDemand | None = None, **options: object
) -> ScaleSetListener:
    return ScaleSetListener(
        POOL,
        pools_for(github),
        demand or ScaleSetDemand(),
        owner,
        **options,  # type: ignore[arg-type]
    )


def test_messages_are_acquired_recorded_then_acknowledged(github: FakeGitHub) -> None:
    seen: list[tuple[str, int, list[int]]] = []
    demand = ScaleSetDemand()

    def on_message(pool: str, message: ScaleSetMessage) -> None:
        # called after recording, before acknowledging: the message is still in the queue
        scale_set_id = demand.latest(pool).scale_set_id  # type: ignore[union-attr]
        seen.append((pool, message.message_id, github.actions.unacknowledged(scale_set_id)))

    listener = listener_for(github, "replica-1", demand, on_message=on_message)
    assert listener.step() == 0.0  # opens the session, polls: 202
    assert listener.stats.empty_polls == 1 and demand.pending(["pool-a"]) == {"pool-a": 0}
    for job in range(3):
        github.actions.queue_job(ORG, ["pool-a"], "acme/app", job)
    listener.step()
    assert listener.stats.acquired == 3
    assert demand.pending(["pool-a"]) == {"pool-a": 0}  # statistics of the JobAvailable message
    listener.step()  # the JobAssigned message: assigned 3, running 0
    assert demand.pending(["pool-a"]) == {"pool-a": 3}
    assert [(pool, mid, queue) for pool, mid, queue in seen] == [
        ("pool-a", seen[0][1], [seen[0][1]]),
        ("pool-a", seen[1][1], [seen[1][1]]),
    ]
    scale_set_id = demand.latest("pool-a").scale_set_id  # type: ignore[union-attr]
    assert github.actions.unacknowledged(scale_set_id) == []
    assert github.actions.max_capacity(scale_set_id) == 25


def test_one_session_across_replicas_and_the_409_is_waited_out(github: FakeGitHub) -> None:
    leader = listener_for(github, "replica-1")
    standby = listener_for(github, "replica-2", conflict_retry=0.1)
    leader.step()
    assert standby.step() == 0.1 and standby.session is None
    assert standby.step() == 0.1
    assert standby.stats.conflicts == 2 and standby.stats.sessions == 0
    leader.close()  # leadership moves: the old leader closes its session
    assert standby.step() == 0.0 and standby.stats.sessions == 1


def test_an_unacknowledged_message_reaches_the_next_leader(github: FakeGitHub) -> None:
    leading = {"replica-1": True}
    first = listener_for(github, "replica-1")
    first.step()
    github.actions.queue_job(ORG, ["pool-a"], "acme/app", 1)
    # leadership is lost while the poll is in flight: the message is not acted on
    first.step(should_listen=lambda: leading["replica-1"] and first.stats.polls < 2)
    assert first.stats.messages == 0
    scale_set_id = github.actions.scale_sets(ORG)[0]["id"]
    (unacknowledged,) = github.actions.unacknowledged(scale_set_id)
    first.close()
    handled: list[int] = []
    second = listener_for(
        github, "replica-2", on_message=lambda pool, message: handled.append(message.message_id)
    )
    second.step()  # opens its session
    assert handled == [unacknowledged] and second.stats.acquired == 1


class Lease:
    """A fence: the lease is ours while `held` (as the elector says), for 10 s more."""

    epoch = 1

    def __init__(self) -> None:
        self.held = True

    def remaining(self) -> float:
        return 10.0 if self.held else 0.0


def test_a_listener_whose_lease_ran_out_acquires_and_acknowledges_nothing(
    github: FakeGitHub,
) -> None:
    """A paused or cut-off leader: its lease ran out before it saw it. The message stays for
    the next leader, the session is left to lapse, and nothing mutating reaches GitHub."""
    lease = Lease()
    first = listener_for(github, "replica-1")
    with fencing.fenced(lease):
        first.step()  # the session opens while the lease is held
        assert first.session is not None
        github.actions.queue_job(ORG, ["pool-a"], "acme/app", 1)
        lease.held = False
        before = dict(first.scale_sets.client(POOL.scope).calls)
        assert first.step() == 1.0  # the message came; acquiring it is refused
        first.close()  # its DELETE is refused too: the session lapses
    calls = first.scale_sets.client(POOL.scope).calls
    mutating = {e: n - before.get(e, 0) for e, n in calls.items() if not e.startswith("GET")}
    assert not any(mutating.values()), mutating
    assert first.stats.acquired == 0 and first.session is None
    scale_set_id = github.actions.scale_sets(ORG)[0]["id"]
    assert len(github.actions.unacknowledged(scale_set_id)) == 1
    assert github.actions.active_sessions(scale_set_id) == 1  # not closed: it will lapse
    github.actions.session_idle_timeout = 0.3  # ... as it does, then the next leader has it
    wait_for(lambda: github.actions.active_sessions(scale_set_id) == 0, 5)
    github.actions.session_idle_timeout = 120.0
    second = listener_for(github, "replica-2")
    with fencing.fenced(Lease()):
        second.step()
    assert second.stats.acquired == 1


def test_an_expired_queue_token_is_refreshed_and_nothing_is_lost(github: FakeGitHub) -> None:
    listener = listener_for(github, "replica-1")
    listener.step()
    github.actions.queue_job(ORG, ["pool-a"], "acme/app", 1)
    github.actions.expire_queue_tokens()
    listener.step()
    assert listener.session is not None and listener.session.refreshes == 1
    assert listener.stats.acquired == 1 and listener.stats.errors == 0


def test_a_deleted_scale_set_is_created_again(github: FakeGitHub) -> None:
    listener = listener_for(github, "replica-1")
    listener.step()
    (old,) = github.actions.scale_sets(ORG)
    github.actions.delete_scale_set(old["id"])
    assert listener.step() > 0  # the poll fails (session gone with its scale set)
    for _ in range(3):
        listener.step()
    (new,) = github.actions.scale_sets(ORG)
    assert new["id"] != old["id"] and listener.stats.sessions == 2


def test_errors_back_off_exponentially(github: FakeGitHub) -> None:
    listener = listener_for(github, "replica-1", backoff=1.0, max_backoff=4.0)
    listener.step()
    github.actions.fail_next(20, 503)
    waits = [listener.step() for _ in range(4)]
    assert [0.5 <= w <= 1.0 for w in waits[:1]] == [True]
    assert all(w <= 4.0 for w in waits) and waits[-1] >= 2.0
    assert listener.stats.errors == 4


def test_listeners_listen_only_while_leading_and_close_on_stop(github: FakeGitHub) -> None:
    leading = threading.Event()
    demand = ScaleSetDemand()
    listeners = ScaleSetListeners(pools_for(github), demand, "replica-1", leading.is_set)
    listeners.sync({POOL.name: POOL})
    try:
        assert github.actions.scale_sets(ORG) == []  # a standby does not even create it
        leading.set()
        wait_for(lambda: demand.latest("pool-a") is not None, timeout=30)
        scale_set_id = demand.latest("pool-a").scale_set_id  # type: ignore[union-attr]
        assert github.actions.active_sessions(scale_set_id) == 1
        leading.clear()  # leadership lost: the session is closed for the next leader
        wait_for(lambda: github.actions.active_sessions(scale_set_id) == 0, timeout=30)
        leading.set()
        wait_for(lambda: github.actions.active_sessions(scale_set_id) == 1, timeout=30)
        listeners.sync({})  # the pool no longer takes scale-set demand
        wait_for(lambda: github.actions.active_sessions(scale_set_id) == 0, timeout=30)
        assert demand.latest("pool-a") is None
    finally:
        listeners.stop()
