"""Leader election with a lease item in DynamoDB, after controller-runtime's defaults.

One item per controller deployment holds the holder's identity and when the lease expires.
A replica acquires it with a conditional write (no holder, expired, or already ours) and
renews it every retry period. It acts as leader only while its last successful renewal is
younger than the renew deadline, so a leader cut off from DynamoDB stops acting before the
lease can expire for the others: clock skew up to (lease duration - renew deadline) is safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.dynamodb import ensure_table
from ..clock import WallClock, wall_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    """Where the lease lives and its timing (controller-runtime: 15 s / 10 s / 2 s)."""

    table: str = "ecs-reconciler-leases"
    name: str = "ecs-reconciler"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaderElector:
    """Competes for the lease; `is_leader` says whether this replica may act now."""

    def __init__(
        self,
        dynamodb: Any,
        identity: str,
        config: LeaseConfig | None = None,
        clock: WallClock = wall_time,
    ) -> None:
        self.dynamodb = dynamodb
        self.identity = identity
        self.config = config or LeaseConfig()
        self.clock = clock
        self._renewed_at: float | None = None

    @property
    def is_leader(self) -> bool:
        """True while our last successful acquire/renew is younger than the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self.clock() - renewed < self.config.renew_deadline

    def ensure_table(self, timeout: float = 30.0) -> None:
        """Create the lease table (on-demand, key `name`) if it does not exist; idempotent."""
        ensure_table(self.dynamodb, self.config.table, "name", timeout)

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the lease afterwards."""
        now = self.clock()
        try:
            self.dynamodb.update_item(
                TableName=self.config.table,
                Key={"name": {"S": self.config.name}},
                UpdateExpression=(
                    "SET holderIdentity = :me, expiresAt = :expires, renewTime = :now, "
                    "leaseDurationSeconds = :duration, "
                    "acquireTime = if_not_exists(acquireTime, :now), "
                    "leaseTransitions = if_not_exists(leaseTransitions, :zero) + :change"
                ),
                ConditionExpression=(
                    "attribute_not_exists(#n) OR holderIdentity = :me OR expiresAt < :now"
                ),
                ExpressionAttributeNames={"#n": "name"},
                ExpressionAttributeValues={
                    ":me": {"S": self.identity},
                    ":now": {"N": repr(now)},
                    ":expires": {"N": repr(now + self.config.lease_duration)},
                    ":duration": {"N": repr(self.config.lease_duration)},
                    ":zero": {"N": "0"},
                    ":change": {"N": "0" if self.is_leader else "1"},
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                log.warning("lease %s: %s", self.config.name, error)
            return self.is_leader
        except BotoCoreError as error:
            log.warning("lease %s: %s", self.config.name, error)
            return self.is_leader
        self._renewed_at = now
        return True

    def release(self) -> None:
        """Give the lease up now (clean shutdown), so a standby takes over at once."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            self.dynamodb.delete_item(
                TableName=self.config.table,
                Key={"name": {"S": self.config.name}},
                ConditionExpression="holderIdentity = :me",
                ExpressionAttributeValues={":me": {"S": self.identity}},
            )
        except (ClientError, BotoCoreError) as error:
            log.warning("lease %s: release failed: %s", self.config.name, error)

    def run(
        self,
        stop: threading.Event,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
    ) -> None:
        """Try every retry period until `stop`; release the lease when stopping."""
        leading = False
        try:
            while not stop.is_set():
                self.try_acquire_or_renew()
                if self.is_leader and not leading:
                    leading = True
                    log.info("%s started leading", self.identity)
                    if on_started_leading:
                        on_started_leading()
                elif leading and not self.is_leader:
                    leading = False
                    log.warning("%s stopped leading", self.identity)
                    if on_stopped_leading:
                        on_stopped_leading()
                stop.wait(self.config.retry_period)
        finally:
            self.release()
            if leading and on_stopped_leading:
                on_stopped_leading()
