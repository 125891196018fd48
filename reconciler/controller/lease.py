"""Leader election with a lease item in DynamoDB, after client-go's `leaderelection`.

One item per controller deployment holds the holder's identity, a `version` token that
changes on every write (DynamoDB's stand-in for a resourceVersion) and `leaseTransitions`,
the number of times the lease changed hands: the **epoch**, which tags what a term does.

- The holder renews every retry period with a write conditional on still being the holder.
  It acts only while its last successful renewal is younger than the renew deadline, measured
  on its own monotonic clock from when that renewal was *sent* (`remaining()`), so the
  deadline is never later than the moment DynamoDB stored the renewal.
- A challenger never trusts a timestamp written by another replica. It reads the record;
  whenever the (holder, version) it sees changes, it notes the time on its own monotonic
  clock (client-go's observedTime), and it takes over only once it has seen the same record
  for a full lease duration, with a write conditional on that version (so of two challengers
  at most one wins). Wall clocks and skew between replicas play no part: a challenger's
  lease duration starts after the holder's renew deadline, so the holder has stopped acting
  (lease duration - renew deadline) seconds before anyone can take over, whatever the clocks
  say, provided they run at about the same rate.
- A released lease (holder "") is taken at once; the epoch keeps counting.
- Rolling upgrades: the record keeps the previous format's `renewTime` and `expiresAt`
  (wall clock, for people and for replicas of the previous version, whose challengers still
  compare `expiresAt`); a change of (holder, version, renewTime) counts as a change, so a
  holder of the previous version, which writes no `version`, is still seen renewing.

Defaults are controller-runtime's: lease 15 s, renew deadline 10 s, retry period 2 s.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
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

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "lease timing must satisfy 0 < retry period < renew deadline < lease duration, "
                f"got {self.lease_duration:g},{self.renew_deadline:g},{self.retry_period:g}"
            )


class LeaderElector:
    """Competes for the lease; `remaining()` says for how long this replica may still act."""

    def __init__(
        self,
        dynamodb: Any,
        identity: str,
        config: LeaseConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: WallClock = wall_time,
    ) -> None:
        """`clock` is monotonic and measures every duration; `wall_clock` only fills the
        record's informative `renewTime` for people reading the table."""
        self.dynamodb = dynamodb
        self.identity = identity
        self.config = config or LeaseConfig()
        self.clock = clock
        self.wall_clock = wall_clock
        self._renewed_at: float | None = None  # when our last successful write was sent
        self._epoch = 0
        self._observed: tuple[str, str, str] | None = None  # (holder, version, renewTime)
        self._observed_at = 0.0  # our clock when `_observed` was first seen

    @property
    def is_leader(self) -> bool:
        """True while our last successful acquire/renew is younger than the renew deadline."""
        return self.remaining() > 0

    def remaining(self) -> float:
        """Seconds before the renew deadline of our last renewal (<= 0: not leading)."""
        renewed = self._renewed_at
        if renewed is None:
            return 0.0
        return renewed + self.config.renew_deadline - self.clock()

    @property
    def epoch(self) -> int:
        """`leaseTransitions` of the record when this replica last acquired it (0: never)."""
        return self._epoch

    def ensure_table(self, timeout: float = 30.0) -> None:
        """Create the lease table (on-demand, key `name`) if it does not exist; idempotent."""
        ensure_table(self.dynamodb, self.config.table, "name", timeout)

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the lease afterwards."""
        sent = self.clock()
        try:
            if self._renewed_at is not None:
                return self._write(sent, "holderIdentity = :me", {}, new_term=False)
            record = self._read()
            if record is None:
                return self._write(sent, "attribute_not_exists(#n)", {}, new_term=True)
            holder, version, renewed = record
            if holder == self.identity:  # ours, not renewed in time: nobody else acted
                return self._write(sent, "holderIdentity = :me", {}, new_term=not self._epoch)
            if record != self._observed:
                self._observed, self._observed_at = record, sent
            if holder and sent - self._observed_at < self.config.lease_duration:
                return False
            unchanged = [  # take it only if the record is still the one we watched
                "holderIdentity = :holder",
                "renewTime = :renewed" if renewed else "attribute_not_exists(renewTime)",
                "version = :seen" if version else "attribute_not_exists(version)",
            ]
            values = {
                ":holder": {"S": holder},
                **({":renewed": {"N": renewed}} if renewed else {}),
                **({":seen": {"S": version}} if version else {}),
            }
            taken = self._write(sent, " AND ".join(unchanged), values, new_term=True)
            if not taken:
                self._observed = None  # someone else won: watch the new record afresh
            return taken
        except ClientError as error:
            log.warning("lease %s: %s", self.config.name, error)
        except BotoCoreError as error:
            log.warning("lease %s: %s", self.config.name, error)
        return self.is_leader

    def _read(self) -> tuple[str, str, str] | None:
        """(holder, version, renewTime) of the record, or None when there is none."""
        item = self.dynamodb.get_item(
            TableName=self.config.table,
            Key={"name": {"S": self.config.name}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            return None
        return (
            item.get("holderIdentity", {}).get("S", ""),
            item.get("version", {}).get("S", ""),
            item.get("renewTime", {}).get("N", ""),
        )

    def _write(self, sent: float, condition: str, values: dict[str, Any], new_term: bool) -> bool:
        """One conditional write of the record as ours; False when the condition failed."""
        version = uuid.uuid4().hex
        wall = self.wall_clock()
        try:
            response = self.dynamodb.update_item(
                TableName=self.config.table,
                Key={"name": {"S": self.config.name}},
                UpdateExpression=(
                    "SET holderIdentity = :me, version = :version, renewTime = :wall, "
                    "expiresAt = :expires, leaseDurationSeconds = :duration, "
                    "acquireTime = if_not_exists(acquireTime, :wall), "
                    "leaseTransitions = if_not_exists(leaseTransitions, :zero) + :change"
                ),
                ConditionExpression=condition,
                **({"ExpressionAttributeNames": {"#n": "name"}} if "#n" in condition else {}),
                ExpressionAttributeValues={
                    ":me": {"S": self.identity},
                    ":version": {"S": version},
                    ":wall": {"N": repr(wall)},
                    ":expires": {"N": repr(wall + self.config.lease_duration)},
                    ":duration": {"N": repr(self.config.lease_duration)},
                    ":zero": {"N": "0"},
                    ":change": {"N": "1" if new_term else "0"},
                    **values,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            if self._renewed_at is not None:
                log.warning("%s: the lease is held by another replica now", self.identity)
            self._renewed_at = None
            return False
        epoch = int(response["Attributes"]["leaseTransitions"]["N"])
        if epoch != self._epoch:
            log.info("%s holds lease %s, epoch %d", self.identity, self.config.name, epoch)
        self._epoch = epoch
        self._observed = (self.identity, version, repr(wall))
        self._renewed_at = sent
        return True

    def release(self) -> None:
        """Give the lease up now (clean shutdown), so a standby takes over at once."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            self.dynamodb.update_item(
                TableName=self.config.table,
                Key={"name": {"S": self.config.name}},
                UpdateExpression="SET holderIdentity = :nobody, version = :version",
                ConditionExpression="holderIdentity = :me",
                ExpressionAttributeValues={
                    ":me": {"S": self.identity},
                    ":nobody": {"S": ""},
                    ":version": {"S": uuid.uuid4().hex},
                },
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
                    log.info("%s started leading (epoch %d)", self.identity, self._epoch)
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
