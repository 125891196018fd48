"""Demand from runner scale sets: a listener per pool, and the statistics it records.

`ScaleSetListener.run` is one pool's loop, run on its own thread by the leader only:

1. adopt or create the pool's scale set (`ScaleSetPools.scale_set`);
2. open its message session; a 409 (another replica, or a dead leader's session that has not
   lapsed yet) is waited out, never fought: retried every `conflict_retry` seconds;
3. long-poll (``X-ScaleSetMaxCapacity`` = the pool's max); for each message: acquire its
   available jobs, record its statistics in `ScaleSetDemand`, tell the controller, and only
   then acknowledge it (a leader that dies before acknowledging leaves the message to the
   next session);
4. a 401 on the queue token refreshes the session (inside `MessageSession`); a deleted scale
   set is created again; other errors back off exponentially (capped), the session is
   re-opened after an error that may have broken it;
5. when leadership is lost or the loop is stopped, the session is closed (DELETE) so the
   next leader can open one at once; every mutating call runs inside the lease's fence, so a
   replica whose lease ran out (paused, cut off) acquires and acknowledges nothing more and
   leaves its session to lapse.

The planner sizes a scale-set pool on ``totalAssignedJobs`` (running jobs included) plus its
idle target, clamped to min..max (ARC's listener): `pending` gives it assigned - running,
since the planner adds the busy runners it sees itself.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .. import fencing
from ..clock import WallClock, wall_time
from ..github.client import GitHubError
from ..github.scaleset.errors import ActionsServiceError, ScaleSetNotFound, SessionConflict
from ..github.scaleset.messages import (
    MessageFormatError,
    ScaleSetMessage,
    Statistics,
)
from ..github.scaleset.pools import ScaleSetPool, ScaleSetPools
from ..github.scaleset.session import MessageSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedStatistics:
    """A scale set's statistics and when (wall clock, epoch seconds) they were recorded."""

    scale_set_id: int
    statistics: Statistics
    recorded_at: float


class ScaleSetDemand:
    """The latest statistics of each scale-set pool; thread-safe."""

    def __init__(self, clock: WallClock = wall_time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, RecordedStatistics] = {}

    def record(self, pool: str, scale_set_id: int, statistics: Statistics) -> None:
        """Keep a pool's newest statistics."""
        with self._lock:
            self._latest[pool] = RecordedStatistics(scale_set_id, statistics, self.clock())

    def latest(self, pool: str) -> RecordedStatistics | None:
        """A pool's newest statistics, None before its listener recorded any."""
        with self._lock:
            return self._latest.get(pool)

    def pending(self, pools: Iterable[str]) -> dict[str, int]:
        """Jobs assigned to each pool's scale set and not running yet (acquired, waiting for
        a runner): the planner adds its busy runners and the idle target to this."""
        with self._lock:
            return {
                pool: max(0, r.statistics.total_assigned_jobs - r.statistics.total_running_jobs)
                for pool in pools
                if (r := self._latest.get(pool)) is not None
            }

    def forget(self, pool: str) -> None:
        """A pool no longer takes demand from a scale set."""
        with self._lock:
            self._latest.pop(pool, None)


@dataclass
class ListenerStats:
    """What a listener did (for tests, metrics and the bench)."""

    messages: int = 0
    acquired: int = 0
    polls: int = 0
    empty_polls: int = 0
    conflicts: int = 0
    errors: int = 0
    sessions: int = 0


class ScaleSetListener:
    """One scale-set pool's message loop (see the module docstring)."""

    def __init__(
        self,
        pool: ScaleSetPool,
        scale_sets: ScaleSetPools,
        demand: ScaleSetDemand,
        owner: str,
        *,
        on_message: Callable[[str, ScaleSetMessage], None] | None = None,
        conflict_retry: float = 5.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.pool = pool
        self.scale_sets = scale_sets
        self.demand = demand
        self.owner = owner
        self.on_message = on_message
        self.conflict_retry = conflict_retry
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stats = ListenerStats()
        self.session: MessageSession | None = None
        self._last_message_id = 0
        self._failures = 0
        self._waiting_logged = False

    def run(
        self,
        should_listen: Callable[[], bool],
        stop: threading.Event,
        fence: fencing.Fence | None = None,
    ) -> None:
        """Listen while `should_listen()` (leadership) holds, until `stop` is set; every
        mutating call (session, acquire, acknowledge) inside the lease's `fence`."""
        with fencing.fenced(fence):
            self._listen(should_listen, stop)

    def _listen(self, should_listen: Callable[[], bool], stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                if not should_listen():
                    self.close()
                    stop.wait(1.0)
                    continue
                wait = self.step(should_listen)
                if wait:
                    stop.wait(wait)
        finally:
            self.close()

    def step(self, should_listen: Callable[[], bool] = lambda: True) -> float:
        """One iteration: open the session if needed, poll once, handle what came.
        Returns seconds to wait before the next (0: go on)."""
        try:
            if self.session is None and not self._open():
                return self.conflict_retry
            assert self.session is not None
            self.stats.polls += 1
            message = self.session.get_message(self._last_message_id, self.pool.maximum)
            if not should_listen():
                return 0.0  # leadership lost while polling: the message stays for the next
            if message is None:
                self.stats.empty_polls += 1
            else:
                self._handle(message)
            self._failures = 0
            return 0.0
        except ScaleSetNotFound:
            log.warning("pool %s: scale set deleted on GitHub; creating it again", self.pool.name)
            self.scale_sets.forget(self.pool.name)
            self.session = None
            return self._failed()
        except fencing.LeaseLost as error:
            # the message stays unacknowledged for the next leader; so does the session,
            # which lapses (its DELETE is a mutating call too)
            log.warning("pool %s: scale set listener stops: %s", self.pool.name, error)
            self._drop_session()
            return 1.0
        except (ActionsServiceError, GitHubError, MessageFormatError, LookupError) as error:
            log.warning("pool %s: scale set listener: %s", self.pool.name, error)
            if isinstance(error, ActionsServiceError | GitHubError) and error.status in (0, 401):
                self._drop_session()  # a broken connection or a session that is gone
            return self._failed()

    def close(self) -> None:
        """Close the session (if any) so another replica can open one at once."""
        session, self.session = self.session, None
        if session is not None:
            try:
                session.close()
            except (ActionsServiceError, GitHubError, fencing.LeaseLost) as error:
                log.info("pool %s: session not closed (it will lapse): %s", self.pool.name, error)

    def _open(self) -> bool:
        scale_set = self.scale_sets.scale_set(self.pool)
        client = self.scale_sets.client(self.pool.scope)
        try:
            session = MessageSession.open(client, scale_set.id, self.owner)
        except SessionConflict as error:
            self.stats.conflicts += 1
            if not self._waiting_logged:
                log.info(
                    "pool %s: waiting for the session held elsewhere: %s", self.pool.name, error
                )
                self._waiting_logged = True
            return False
        self._waiting_logged = False
        self.session, self._last_message_id = session, 0
        self.stats.sessions += 1
        log.info("pool %s: message session opened on scale set %d", self.pool.name, scale_set.id)
        self.demand.record(self.pool.name, scale_set.id, session.statistics)
        return True

    def _handle(self, message: ScaleSetMessage) -> None:
        assert self.session is not None
        available = [job.runner_request_id for job in message.available]
        if available:
            self.stats.acquired += len(self.session.acquire_jobs(available))
        self.demand.record(self.pool.name, self.session.scale_set_id, message.statistics)
        if self.on_message is not None:
            self.on_message(self.pool.name, message)
        self.session.delete_message(message.message_id)  # recorded: acknowledge
        self._last_message_id = message.message_id
        self.stats.messages += 1

    def _drop_session(self) -> None:
        self.session = None

    def _failed(self) -> float:
        self.stats.errors += 1
        self._failures += 1
        delay = min(self.max_backoff, self.backoff * 2 ** (self._failures - 1))
        return delay * random.uniform(0.5, 1.0)


class ScaleSetListeners:
    """One listener thread per scale-set pool; `sync` starts and stops them as specs change."""

    def __init__(
        self,
        scale_sets: ScaleSetPools,
        demand: ScaleSetDemand,
        owner: str,
        should_listen: Callable[[], bool],
        on_message: Callable[[str, ScaleSetMessage], None] | None = None,
        fence: fencing.Fence | None = None,
        **listener_options: float,
    ) -> None:
        """`fence`: the lease every listener's mutating calls are checked against (None:
        unfenced, a single replica)."""
        self.scale_sets = scale_sets
        self.demand = demand
        self.owner = owner
        self.should_listen = should_listen
        self.fence = fence
        self.on_message = on_message
        self.listener_options = listener_options
        self.listeners: dict[str, tuple[ScaleSetListener, threading.Event, threading.Thread]] = {}

    def sync(self, pools: dict[str, ScaleSetPool]) -> None:
        """Run a listener for each pool (restarted when its spec changed), none for others."""
        self.scale_sets.set_pools(pools)
        for name in list(self.listeners):
            listener, stop, _ = self.listeners[name]
            if pools.get(name) != listener.pool:
                stop.set()
                del self.listeners[name]
                if name not in pools:
                    self.demand.forget(name)
        for name, pool in pools.items():
            if name in self.listeners:
                continue
            listener = ScaleSetListener(
                pool,
                self.scale_sets,
                self.demand,
                self.owner,
                on_message=self.on_message,
                **self.listener_options,
            )
            stop = threading.Event()
            thread = threading.Thread(
                target=listener.run,
                args=(self.should_listen, stop, self.fence),
                name=f"scale-set-{name}",
                daemon=True,
            )
            thread.start()
            self.listeners[name] = (listener, stop, thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every listener; each closes its session once its poll returns."""
        for _, stop, _ in self.listeners.values():
            stop.set()
        deadline = time.monotonic() + timeout
        for _, _, thread in self.listeners.values():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.listeners = {}
