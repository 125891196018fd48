"""Queue-wait objective (`scaling.slo`): the pure model in tables, its place in the desired
state and the autoscaler, the spec's errors, and the arrival counts on DynamoDB (moto)."""

from __future__ import annotations

import datetime

import pytest

from reconciler.aws.dynamodb import ensure_table
from reconciler.github.arrivals import DynamoArrivalStore, MemoryArrivalStore
from reconciler.plan.capacity import plan_capacity
from reconciler.plan.desired import render_desired
from reconciler.plan.slo import (
    SLOT_SECONDS,
    ArrivalHistory,
    poisson_quantile,
    slo_sizing,
    slot_label,
    week_and_slot,
)
from reconciler.plan.state import (
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    ObservedAutoScalingGroup,
    ObservedInstance,
    ObservedState,
)
from reconciler.spec.loader import load_specs
from reconciler.spec.models import QueueWaitSlo
from tests.conftest import CAPACITY_PROVIDER, POOL

UTC = datetime.UTC
MONDAY_0900 = datetime.datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday
WEEK, SLOT = week_and_slot(MONDAY_0900)
SLO = QueueWaitSlo.model_validate({"queueWait": "30s", "percentile": 90})


def history(per_slot: dict[int, int], weeks: int = 2, this_week: dict[int, int] | None = None):
    """`per_slot` jobs in each of the `weeks` weeks before MONDAY_0900's, watched all week."""
    counts = {WEEK - age: dict(per_slot) for age in range(1, weeks + 1)}
    counts[WEEK] = dict(this_week or {})
    return ArrivalHistory(counts, {WEEK - age: 0 for age in range(0, weeks + 1)})


# ---------------------------------------------------------------- the pure model


@pytest.mark.parametrize(
    ("probability", "mean", "expected"),
    [
        (0.9, 0.0, 0),
        (0.9, 0.1, 0),  # P(N=0) = exp(-0.1) = 0.905
        (0.9, 1.0, 2),  # P(N<=1) = 0.736, P(N<=2) = 0.920
        (0.5, 4.0, 4),  # P(N<=3) = 0.433, P(N<=4) = 0.629
        (0.9, 4.0, 7),  # P(N<=6) = 0.889, P(N<=7) = 0.949
        (0.99, 10.0, 18),  # P(N<=17) = 0.986, P(N<=18) = 0.993
        (0.9, 1000.0, 1041),  # normal: 1000 + 1.2816 * 31.62 - 0.5 = 1040.0 -> 1041
    ],
)
def test_poisson_quantile(probability: float, mean: float, expected: int) -> None:
    assert poisson_quantile(probability, mean) == expected


@pytest.mark.parametrize(("probability", "mean"), [(0.0, 1.0), (1.0, 1.0), (0.9, -1.0)])
def test_poisson_quantile_rejects_bad_input(probability: float, mean: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        poisson_quantile(probability, mean)


def test_week_and_slot_count_from_monday_utc() -> None:
    assert week_and_slot(MONDAY_0900)[1] == 9 * 12
    assert slot_label(9 * 12 + 1) == "Mon 09:05 UTC"
    assert slot_label(2015) == "Sun 23:55 UTC"
    sunday = MONDAY_0900 - datetime.timedelta(hours=10)
    assert week_and_slot(sunday) == (WEEK - 1, 2015 - 11)
    with pytest.raises(ValueError, match="time zone"):
        week_and_slot(datetime.datetime(2026, 11, 30, 9))


def test_learned_rate_decays_older_weeks_and_skips_unwatched_slots() -> None:
    counts = {WEEK - 1: {SLOT: 60}, WEEK - 2: {SLOT: 120}}
    both = ArrivalHistory(counts, {WEEK - 1: 0, WEEK - 2: 0})
    # (1 * 60 + 0.5 * 120) / 1.5 = 80 jobs per slot
    assert both.learned_rate(WEEK, SLOT, 0.5) == pytest.approx(80 / SLOT_SECONDS)
    assert both.learned_rate(WEEK, SLOT, 1.0) == pytest.approx(90 / SLOT_SECONDS)
    # week -2 was watched only from after this slot on: it does not count (no fake zero)
    late = ArrivalHistory(counts, {WEEK - 1: 0, WEEK - 2: SLOT + 1})
    assert late.learned_rate(WEEK, SLOT, 0.5) == pytest.approx(60 / SLOT_SECONDS)
    # a watched quiet week counts as zeros: (1 * 0 + 0.5 * 120) / 1.5 = 40
    quiet = ArrivalHistory({WEEK - 2: {SLOT: 120}}, {WEEK - 1: 0, WEEK - 2: 0})
    assert quiet.learned_rate(WEEK, SLOT, 0.5) == pytest.approx(40 / SLOT_SECONDS)
    assert ArrivalHistory().learned_rate(WEEK, SLOT, 0.5) == 0.0


@pytest.mark.parametrize(
    ("case", "arrivals", "now", "warm", "room", "says"),
    [
        ("nothing learned", ArrivalHistory(), MONDAY_0900, 0, 0, "none learned yet"),
        # 60 jobs / 300 s = 0.2/s: 5 expected in 25 s -> p90 8; 19 in 95 s -> p90 25, 17 more
        ("steady slot", history({SLOT: 60}), MONDAY_0900, 8, 17, "learned for Mon 09:00 UTC"),
        # the next slot's storm (0.4/s: 10 in 25 s -> p90 14; 38 in 95 s -> p90 46) is within
        # newInstance (95 s) of now: pre-warmed 90 s ahead
        (
            "storm ahead",
            history({SLOT + 1: 120}),
            MONDAY_0900 + datetime.timedelta(seconds=210),
            14,
            32,
            "learned for Mon 09:05 UTC (pre-warmed)",
        ),
        # the same storm is not yet visible 100 s before the slot before it ends
        ("storm far", history({SLOT + 1: 120}), MONDAY_0900, 0, 0, "none learned yet"),
        # an unlearned surge: 90 jobs in the 300 s + 150 s so far -> 0.2/s as "steady slot"
        (
            "surge seen now",
            history({}, this_week={SLOT - 1: 60, SLOT: 30}),
            MONDAY_0900 + datetime.timedelta(seconds=150),
            8,
            17,
            "seen in the last slots",
        ),
    ],
)
def test_slo_sizing(
    case: str, arrivals: ArrivalHistory, now: datetime.datetime, warm: int, room: int, says: str
) -> None:
    sizing = slo_sizing(SLO, arrivals, now, maximum=100)
    assert (sizing.warm, sizing.spare_room) == (warm, room), case
    assert says in sizing.reason
    assert sizing.reason.startswith(f"slo: {warm} warm = p90 of arrivals in 25 s")


def test_slo_sizing_stays_within_max_and_its_windows() -> None:
    busy = history({SLOT: 600, SLOT - 12: 600})  # 2 jobs/s at 08:00 and 09:00
    assert slo_sizing(SLO, busy, MONDAY_0900, maximum=10).warm == 10
    assert slo_sizing(SLO, busy, MONDAY_0900, maximum=10).spare_room == 0
    office = QueueWaitSlo.model_validate(
        {
            "queueWait": "30s",
            "windows": [
                {"days": ["mon"], "from": "09:00", "to": "18:00", "timezone": "Asia/Tokyo"}
            ],
        }
    )
    # 09:00 UTC is 18:00 in Tokyo: outside the window
    sizing = slo_sizing(office, busy, MONDAY_0900, maximum=100)
    assert (sizing.warm, sizing.spare_room) == (0, 0)
    assert "outside its windows" in sizing.reason
    inside = slo_sizing(office, busy, MONDAY_0900 - datetime.timedelta(hours=1), maximum=100)
    assert inside.warm > 0


# ---------------------------------------------------------------- spec errors


SLO_POOL = POOL.replace(
    "    idle: 1\n",
    "    idle: 1\n    slo:\n      queueWait: 30s\n      percentile: 90\n",
)


@pytest.mark.parametrize(
    ("slo_yaml", "message"),
    [
        ("queueWait: 30", "queueWait"),
        ("queueWait: 30h", "queueWait"),
        ("queueWait: 30s\n      percentile: 100", "percentile"),
        ("queueWait: 30s\n      decay: 0", "decay"),
        (
            "queueWait: 30s\n      startup: {warmInstance: 60s, newInstance: 30s}",
            "newInstance (30s) must be >= warmInstance (60s)",
        ),
        (
            "queueWait: 30s\n      windows: [{days: [mon], from: '18:00', to: '09:00', "
            "timezone: Asia/Tokyo}]",
            "is empty",
        ),
        (
            "queueWait: 30s\n      windows: [{days: [mon], from: '09:00', to: '18:00', "
            "timezone: Mars/Olympus}]",
            "IANA",
        ),
    ],
)
def test_bad_objectives_are_errors_at_their_line(spec_dir, slo_yaml: str, message: str) -> None:
    text = POOL.replace("    idle: 1\n", f"    idle: 1\n    slo:\n      {slo_yaml}\n")
    spec_set = load_specs([spec_dir({"pool.yaml": text, "cp.yaml": CAPACITY_PROVIDER})])
    errors = [str(error) for error in spec_set.errors]
    assert errors and any(message in error and "scaling.slo" in error for error in errors), errors


# ---------------------------------------------------------------- desired state, autoscaler


def test_the_objective_raises_the_idle_target_and_the_plan_says_why(spec_dir) -> None:
    spec_set = load_specs([spec_dir({"pool.yaml": SLO_POOL, "cp.yaml": CAPACITY_PROVIDER})])
    assert spec_set.ok, spec_set.errors
    desired = render_desired(spec_set, MONDAY_0900, "us-east-1", {}, {"pool-a": history({SLOT: 6})})
    pool = desired.pools["pool-a"]
    # 0.02 jobs/s: 0.5 in 25 s -> p90 1 (= the floor idle 1); 1.9 in 95 s -> p90 4: 3 more
    assert (pool.idle_target, pool.spare_room) == (1, 3)
    busier = render_desired(spec_set, MONDAY_0900, "us-east-1", {}, {"pool-a": history({SLOT: 60})})
    pool = busier.pools["pool-a"]
    assert (pool.idle_target, pool.spare_room) == (8, 2)  # max 10: room for 10 - 8
    count, why = pool.target(busy=0)
    assert count == 8
    assert "slo: 8 warm = p90 of arrivals in 25 s" in why
    assert "floor 1: no schedule active" in why
    # the hand-set idle stays a floor when nothing is learned
    bare = render_desired(spec_set, MONDAY_0900, "us-east-1").pools["pool-a"]
    assert (bare.idle_target, bare.spare_room) == (1, 0)


def _group(instances: list[ObservedInstance], desired: int) -> ObservedAutoScalingGroup:
    return ObservedAutoScalingGroup(
        name="ci-linux",
        arn="arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/ci-linux",
        minimum=0,
        maximum=10,
        desired=desired,
        instances=tuple(instances),
        tags={MANAGED_BY_TAG: MANAGED_BY_VALUE},
    )


def _instance(number: int, remaining: tuple[int, int], tasks: int) -> ObservedInstance:
    return ObservedInstance(
        instance_id=f"i-{number:017x}",
        lifecycle_state="InService",
        protected=False,
        container_instance_arn=f"arn:aws:ecs:us-east-1:123456789012:container-instance/ci/{number}",
        status="ACTIVE",
        running_tasks=tasks,
        registered=(4096, 8192),
        remaining=remaining,
        registered_at=0.0,
    )


def test_spare_room_keeps_an_empty_instance_and_opens_one_when_short(spec_dir) -> None:
    provider = CAPACITY_PROVIDER + "  scaling: reconciler\n  minInstanceLifetime: 0\n"
    spec_set = load_specs([spec_dir({"pool.yaml": SLO_POOL, "cp.yaml": provider})])
    quiet = render_desired(spec_set, MONDAY_0900, "us-east-1")
    learned = render_desired(spec_set, MONDAY_0900, "us-east-1", {}, {"pool-a": history({SLOT: 6})})
    assert learned.pools["pool-a"].spare_room == 3  # three 1024/2048 tasks: one 4096/8192 box
    empty = _instance(2, (4096, 8192), tasks=0)
    observed = ObservedState(scaling_groups={"ci-linux": _group([empty], 1)})
    without = plan_capacity(quiet, observed, {}, now=1_000.0)
    assert [a.resource_type for a in without.actions] == ["instances"]  # scaled in
    kept = plan_capacity(learned, observed, {}, now=1_000.0)
    assert kept.actions == [] and not kept.waiting
    full = _instance(3, (0, 0), tasks=4)
    short = plan_capacity(
        learned, ObservedState(scaling_groups={"ci-linux": _group([full], 1)}), {}, 1_000.0
    )
    assert [a.after for a in short.actions] == [{"desiredCapacity": 2}]
    assert "room for 3 (slo)" in short.actions[0].reason
    assert not short.waiting  # no runner of this cycle waits for it


# ---------------------------------------------------------------- the store


def _exercise(store: MemoryArrivalStore | DynamoArrivalStore) -> None:
    at = MONDAY_0900 + datetime.timedelta(seconds=10)
    last_week = at - datetime.timedelta(days=7)
    store.watch(["pool-a", "pool-b"], last_week)
    store.watch(["pool-a"], last_week + datetime.timedelta(hours=1))  # first watch stays
    for _ in range(3):
        store.record("pool-a", last_week)
    store.record("pool-a", at)
    store.record("pool-b", last_week + datetime.timedelta(minutes=5))
    loaded = store.load(["pool-a", "pool-b", "pool-c"], at)
    assert loaded["pool-a"].counts[WEEK - 1] == {SLOT: 3}
    assert loaded["pool-a"].counts[WEEK] == {SLOT: 1}
    assert loaded["pool-a"].observed_from == {WEEK - 1: SLOT}
    assert loaded["pool-b"].counts[WEEK - 1] == {SLOT + 1: 1}
    assert loaded["pool-c"].counts.get(WEEK - 1, {}) == {}
    assert loaded["pool-a"].learned_rate(WEEK, SLOT, 0.5) == pytest.approx(3 / SLOT_SECONDS)
    # history older than the model reads is not loaded
    store.record("pool-a", at - datetime.timedelta(days=7 * 6))
    assert WEEK - 6 not in store.load(["pool-a"], at)["pool-a"].counts


def test_memory_arrival_store() -> None:
    _exercise(MemoryArrivalStore())


def test_dynamo_arrival_store_on_moto(moto) -> None:
    dynamodb = moto.client("dynamodb", "us-east-1")
    ensure_table(dynamodb, "ecs-reconciler-demand", "pk")
    store = DynamoArrivalStore(dynamodb)
    _exercise(store)
    item = dynamodb.get_item(
        TableName="ecs-reconciler-demand", Key={"pk": {"S": f"arrivals#pool-a#{WEEK}"}}
    )["Item"]
    assert item[f"s{SLOT}"] == {"N": "1"}
    assert int(item["ttl"]["N"]) > MONDAY_0900.timestamp() + 4 * 7 * 86400
