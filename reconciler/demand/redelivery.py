"""Recover lost webhook deliveries: ask GitHub to redeliver the `workflow_job` ones that failed.

GitHub never retries a failed delivery by itself (a controller that was down, restarting,
or answered 503 from a full queue). The leader reads the configured hook's delivery log and
asks for a redelivery of each event none of whose attempts succeeded:

- the log is read newest first and only back to the previous pass (minus `overlap`, for
  attempts logged late), at most `window` back; so a steady pass costs one page (100
  deliveries) per `interval`, and the first pass after a start reads the whole window;
- the log is read without a `status` filter: an attempt that got no HTTP answer has status
  code 0, which GitHub's `status=failure` (400-599) does not return;
- attempts are grouped by `guid` (a redelivery keeps the event's guid): an event with any
  2xx attempt is delivered; otherwise its newest attempt is redelivered, **once per event**:
  the guid is claimed in the demand store first (a conditional put in DynamoDB, shared by
  replicas and restarts), and the claim is released if GitHub refuses the request.

The receiver dedupes by delivery guid, so a redelivery of an event stored after all is
harmless. Pure policy apart from the two calls it makes (`GitHubClient.hook_deliveries`,
`GitHubClient.redeliver`).
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass

from ..clock import UtcClock, utc_now
from ..github.client import GitHubClient, GitHubError, HookDelivery, hook_template
from .store import DemandStore

log = logging.getLogger(__name__)

DEFAULT_WINDOW = datetime.timedelta(hours=3)
DEFAULT_INTERVAL = 60.0
OVERLAP = datetime.timedelta(minutes=2)
EVENT = "workflow_job"


@dataclass(frozen=True)
class RedeliveryPass:
    """What one pass read and asked for."""

    listed: int  # attempts read from the log
    failed: int  # workflow_job events with no successful attempt
    requested: int  # redeliveries asked for in this pass
    claimed_before: int  # failed events redelivered by an earlier pass (or replica)


def failed_events(deliveries: list[HookDelivery]) -> dict[str, HookDelivery]:
    """The newest attempt of each `workflow_job` event none of whose attempts succeeded."""
    attempts: dict[str, list[HookDelivery]] = {}
    for delivery in deliveries:
        if delivery.event == EVENT:
            attempts.setdefault(delivery.guid, []).append(delivery)
    return {
        guid: max(tries, key=lambda d: d.id)
        for guid, tries in attempts.items()
        if not any(d.succeeded for d in tries)
    }


class Redeliverer:
    """Reads a hook's delivery log and redelivers failed `workflow_job` events once each."""

    def __init__(
        self,
        github: GitHubClient,
        hook: str,
        store: DemandStore,
        *,
        window: datetime.timedelta = DEFAULT_WINDOW,
        interval: float = DEFAULT_INTERVAL,
        clock: UtcClock = utc_now,
    ) -> None:
        hook_template(hook)  # a clear error for a malformed hook path
        if interval <= 0 or window <= datetime.timedelta(0):
            raise ValueError("redelivery interval and window must be positive")
        self.github = github
        self.hook = hook
        self.store = store
        self.window = window
        self.interval = interval
        self.clock = clock
        self.requested_total = 0
        self._previous: datetime.datetime | None = None
        self._next_at = 0.0  # time.monotonic() of the next due pass

    def due(self) -> bool:
        """True when `interval` seconds have passed since the last pass (or none ran)."""
        return time.monotonic() >= self._next_at

    def forget_progress(self) -> None:
        """Read the whole window at the next pass (on becoming leader)."""
        self._previous = None
        self._next_at = 0.0

    def run(self) -> RedeliveryPass:
        """One pass; raises GitHubError when the log cannot be read."""
        now = self.clock()
        self._next_at = time.monotonic() + self.interval
        horizon = now - self.window
        if self._previous is not None:
            horizon = max(horizon, self._previous - OVERLAP)
        deliveries = self.github.hook_deliveries(
            self.hook, stop=lambda delivery: delivery.delivered_at < horizon
        )
        failed = failed_events(deliveries)
        requested = claimed_before = 0
        for guid, newest in sorted(failed.items(), key=lambda item: item[1].id):
            if not self.store.claim_redelivery(guid, now):
                claimed_before += 1
                continue
            try:
                self.github.redeliver(self.hook, newest.id)
            except GitHubError:
                self.store.release_redelivery(guid)
                raise
            requested += 1
            log.info("asked GitHub to redeliver %s (event %s, %s)", newest.id, guid, newest.action)
        self._previous = now
        self.requested_total += requested
        return RedeliveryPass(len(deliveries), len(failed), requested, claimed_before)
