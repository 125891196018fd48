"""Jobs arrived per pool and 5-minute slot of the week: what a queue-wait objective learns from.

Each accepted `queued` webhook adds one to its pool's count for the slot of the job's
`created_at`, and 2c - 1 to the slot's `squares`, c being the job's place in its workflow run
(a per-run counter item), so a run of n jobs adds n^2: how bursty arrivals are. Each
controller cycle marks the week as watched (`watch`), so a slot with no job
counts as a quiet slot rather than an unknown one. `load` returns the recent weeks as
`reconciler.plan.slo.ArrivalHistory`, which the planner turns into warm runners.

Kept beside the demand (the same DynamoDB table, items `arrivals#<pool>#<week>` with number
attributes `s<slot>` (jobs) and `q<slot>` (squares), at most 2 x 2,016, ~60 KB, and
`run#<pool>#<run id>` counters that expire after a day), shared by replicas: a standby's
webhooks count too. Counts are added with `ADD`, atomic across replicas; a redelivered webhook
never reaches here (the demand book refuses duplicate deliveries first). Items expire after
`HISTORY_WEEKS + 1` weeks through the table's TTL. This module knows nothing about sizing.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from ..plan.slo import HISTORY_WEEKS, ArrivalHistory, week_and_slot

_EPOCH_MONDAY = datetime.datetime(1970, 1, 5, tzinfo=datetime.UTC)
_WEEK_S = 7 * 24 * 3600
#: pool -> week -> slot -> count
Books = dict[str, dict[int, dict[int, int]]]
#: a workflow run's jobs are queued within seconds; its counter is kept a day
RUN_TTL_S = 24 * 3600


class ArrivalStore(Protocol):
    """Where arrival counts live."""

    def record(self, pool: str, at: datetime.datetime, run_id: int) -> None:
        """Count one job of `pool`, of workflow run `run_id`, arriving at `at`."""
        ...

    def watch(self, pools: Iterable[str], at: datetime.datetime) -> None:
        """Mark the week of `at` as watched for `pools` from the slot of `at` on (idempotent)."""
        ...

    def load(self, pools: Iterable[str], at: datetime.datetime) -> dict[str, ArrivalHistory]:
        """The history of each pool over the weeks the model reads, up to the week of `at`."""
        ...


class MemoryArrivalStore:
    """A process-local store (tests, the simulator)."""

    def __init__(self) -> None:
        self.counts: Books = {}
        self.squares: Books = {}
        self.observed_from: dict[str, dict[int, int]] = {}
        self.runs: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def record(self, pool: str, at: datetime.datetime, run_id: int) -> None:
        week, slot = week_and_slot(at)
        with self._lock:
            place = self.runs[(pool, run_id)] = self.runs.get((pool, run_id), 0) + 1
            _add(self.counts, pool, week, slot, 1)
            _add(self.squares, pool, week, slot, 2 * place - 1)

    def watch(self, pools: Iterable[str], at: datetime.datetime) -> None:
        week, slot = week_and_slot(at)
        with self._lock:
            for pool in pools:
                self.observed_from.setdefault(pool, {}).setdefault(week, slot)

    def load(self, pools: Iterable[str], at: datetime.datetime) -> dict[str, ArrivalHistory]:
        week, _ = week_and_slot(at)
        weeks = range(week - HISTORY_WEEKS, week + 1)
        with self._lock:
            return {
                pool: ArrivalHistory(
                    counts={w: dict(self.counts.get(pool, {}).get(w, {})) for w in weeks},
                    observed_from={
                        w: s for w, s in self.observed_from.get(pool, {}).items() if w in weeks
                    },
                    squares={w: dict(self.squares.get(pool, {}).get(w, {})) for w in weeks},
                )
                for pool in pools
            }


class DynamoArrivalStore:
    """Arrival counts in the demand table (see the module docstring for the item layout)."""

    def __init__(self, dynamodb: Any, table: str = "ecs-reconciler-demand") -> None:
        self.dynamodb = dynamodb
        self.table = table

    def record(self, pool: str, at: datetime.datetime, run_id: int) -> None:
        week, slot = week_and_slot(at)
        run = self.dynamodb.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"run#{pool}#{run_id}"}},
            UpdateExpression="ADD jobs :one SET #ttl = :ttl",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":ttl": {"N": str(int(at.timestamp()) + RUN_TTL_S)},
            },
            ReturnValues="UPDATED_NEW",
        )
        place = int(run["Attributes"]["jobs"]["N"])
        self.dynamodb.update_item(
            TableName=self.table,
            Key=_key(pool, week),
            UpdateExpression="ADD #slot :one, #square :square SET #ttl = :ttl",
            ExpressionAttributeNames={"#slot": f"s{slot}", "#square": f"q{slot}", "#ttl": "ttl"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":square": {"N": str(2 * place - 1)},
                ":ttl": {"N": _expiry(week)},
            },
        )

    def watch(self, pools: Iterable[str], at: datetime.datetime) -> None:
        week, slot = week_and_slot(at)
        for pool in pools:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=_key(pool, week),
                UpdateExpression="SET #from = if_not_exists(#from, :slot), #ttl = :ttl",
                ExpressionAttributeNames={"#from": "observedFrom", "#ttl": "ttl"},
                ExpressionAttributeValues={":slot": {"N": str(slot)}, ":ttl": {"N": _expiry(week)}},
            )

    def load(self, pools: Iterable[str], at: datetime.datetime) -> dict[str, ArrivalHistory]:
        week, _ = week_and_slot(at)
        names = sorted(set(pools))
        keys = [(pool, w) for pool in names for w in range(week - HISTORY_WEEKS, week + 1)]
        items: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):  # BatchGetItem: at most 100 keys per call
            request = {
                self.table: {
                    "Keys": [_key(pool, w) for pool, w in keys[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.table, []):
                    items[item["pk"]["S"]] = item
                request = answer.get("UnprocessedKeys") or {}
        histories: dict[str, ArrivalHistory] = {}
        for pool in names:
            counts: dict[int, dict[int, int]] = {}
            squares: dict[int, dict[int, int]] = {}
            observed: dict[int, int] = {}
            for w in range(week - HISTORY_WEEKS, week + 1):
                item = items.get(_key(pool, w)["pk"]["S"])
                if item is None:
                    continue
                counts[w] = _slots(item, "s")
                squares[w] = _slots(item, "q")
                if "observedFrom" in item:
                    observed[w] = int(item["observedFrom"]["N"])
            histories[pool] = ArrivalHistory(counts, observed, squares)
        return histories


def _add(table: Books, pool: str, week: int, slot: int, n: int) -> None:
    slots = table.setdefault(pool, {}).setdefault(week, {})
    slots[slot] = slots.get(slot, 0) + n


def _slots(item: dict[str, Any], prefix: str) -> dict[int, int]:
    return {
        int(name[1:]): int(value["N"])
        for name, value in item.items()
        if name.startswith(prefix) and name[1:].isdigit()
    }


def _key(pool: str, week: int) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"arrivals#{pool}#{week}"}}


def _expiry(week: int) -> str:
    """The end of the last week that still reads this one."""
    end = _EPOCH_MONDAY + datetime.timedelta(seconds=(week + HISTORY_WEEKS + 2) * _WEEK_S)
    return str(int(end.timestamp()))
