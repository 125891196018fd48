"""Queue-wait objective (`scaling.slo`): the pure model in tables, its place in the desired
state and the autoscaler, the spec's errors, and the arrival counts on DynamoDB (moto)."""

from __future__ import annotations

import datetime
import math

import pytest

from reconciler.aws.dynamodb import ensure_table
from reconciler.demand.arrivals import DynamoArrivalStore, MemoryArrivalStore
from reconciler.plan.capacity import plan_capacity
from reconciler.plan.desired import render_desired
from reconciler.plan.slo import (
    SLOT_SECONDS,
    ArrivalHistory,
    Arrivals,
    LargeRuns,
    _covering_runs,
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
    ("arrivals", "window", "expected"),
    [
        (Arrivals(0.0), 95, 0),
        # Poisson(0.9): E[(N-1)+] = 0.307, E[(N-2)+] = 0.080 <= 0.09: x = 1.95 -> 2
        (Arrivals(0.036), 25, 2),
        (Arrivals(0.2), 25, 6),  # Poisson(5): 10% of 5 jobs may miss
        (Arrivals(0.2, 0.5), 25, 6),  # a dispersion below 1 is read as 1
        (Arrivals(0.2), 95, 19),
        (Arrivals(0.2, 3.0), 95, 22),  # runs of 3: 6.3 runs expected
        (Arrivals(0.2, 60.0), 95, 81),  # 0.32 matrices of 60 expected: cover one, and more
        # rare matrices: a job is almost surely in one, so 90% of jobs need 90% of one
        (Arrivals(0.002, 60.0), 95, 55),
        (Arrivals(10.0), 95, 856),  # normal approximation: ~ 90% of the 950 expected
    ],
)
def test_covering_is_job_weighted(arrivals: Arrivals, window: int, expected: int) -> None:
    assert arrivals.covering(0.9, window) == expected
    assert arrivals.covering(0.9, window, limit=5) == min(5, expected)


def test_covering_matches_the_poisson_loss_function() -> None:
    for mean in (0.5, 2.0, 7.3, 40.0):
        x = _covering_runs(mean, 0.1 * mean)
        loss, pmf = 0.0, math.exp(-mean)
        for i in range(400):
            loss += max(0.0, i - x) * pmf
            pmf *= mean / (i + 1)
        assert loss == pytest.approx(0.1 * mean, rel=1e-6)


def test_week_and_slot_count_from_monday_utc() -> None:
    assert week_and_slot(MONDAY_0900)[1] == 9 * 12
    assert slot_label(9 * 12 + 1) == "Mon 09:05 UTC"
    assert slot_label(2015) == "Sun 23:55 UTC"
    sunday = MONDAY_0900 - datetime.timedelta(hours=10)
    assert week_and_slot(sunday) == (WEEK - 1, 2015 - 11)
    with pytest.raises(ValueError, match="time zone"):
        week_and_slot(datetime.datetime(2026, 11, 30, 9))


def test_squares_measure_how_bursty_a_slot_is() -> None:
    # last week: 10 single-job runs and one 50-job matrix in the slot: 60 jobs, 10 + 2500
    bursty = ArrivalHistory({WEEK - 1: {SLOT: 60}}, {WEEK - 1: 0}, {WEEK - 1: {SLOT: 2510}})
    assert bursty.learned(WEEK, SLOT, 0.5) == Arrivals(60 / SLOT_SECONDS, 2510 / 60)
    now = MONDAY_0900 + datetime.timedelta(seconds=60)
    this_week = ArrivalHistory({WEEK: {SLOT: 60}}, {WEEK: 0}, {WEEK: {SLOT: 2510}})
    assert this_week.recent(now) == Arrivals(60 / 360, 2510 / 60)


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


TEN_SECONDS = QueueWaitSlo.model_validate({"queueWait": "10s", "percentile": 90})
STORM_AHEAD = MONDAY_0900 + datetime.timedelta(seconds=210)
SURGE_NOW = MONDAY_0900 + datetime.timedelta(seconds=150)


@pytest.mark.parametrize(
    ("case", "slo", "arrivals", "now", "warm", "room", "says"),
    [
        ("nothing learned", SLO, ArrivalHistory(), MONDAY_0900, 0, 0, "none learned yet"),
        # 60 jobs / 300 s = 0.2/s: Poisson(19) in 95 s -> 19; room serves a 30 s target, so
        # no warm runner: idle runners would cost the same room and serve one pool only
        ("steady slot", SLO, history({SLOT: 60}), MONDAY_0900, 0, 19, "for Mon 09:00 UTC"),
        # a 10 s target needs warm runners: Poisson(5) in 25 s -> 6; room for 19 - 6 more
        ("steady, 10 s", TEN_SECONDS, history({SLOT: 60}), MONDAY_0900, 6, 13, "09:00 UTC"),
        # next slot's storm (0.4/s) is within newInstance (95 s): pre-warmed 90 s ahead
        ("storm ahead", SLO, history({SLOT + 1: 120}), STORM_AHEAD, 0, 36, "09:05 UTC (pre-"),
        ("storm ahead, 10 s", TEN_SECONDS, history({SLOT + 1: 120}), STORM_AHEAD, 11, 25, "pre"),
        # 95 s before it, only the hour around now sees the storm (120 jobs / 12 slots)
        ("storm far", SLO, history({SLOT + 1: 120}), MONDAY_0900, 0, 5, "for the 1 h around"),
        # an unlearned surge: 90 jobs in the 300 s + 150 s so far -> 0.2/s as "steady slot"
        (
            "surge seen now",
            SLO,
            history({}, this_week={SLOT - 1: 60, SLOT: 30}),
            SURGE_NOW,
            0,
            19,
            "seen in the last slots",
        ),
    ],
)
def test_slo_sizing(
    case: str,
    slo: QueueWaitSlo,
    arrivals: ArrivalHistory,
    now: datetime.datetime,
    warm: int,
    room: int,
    says: str,
) -> None:
    sizing = slo_sizing(slo, arrivals, now, maximum=100)
    assert (sizing.warm, sizing.spare_room) == (warm, room), case
    assert says in sizing.reason
    if slo is SLO:
        assert sizing.reason.startswith("slo: 0 warm (on spare room a runner is online in 25 s")
    else:
        assert sizing.reason.startswith(f"slo: {warm} warm = p90 of jobs arriving in 25 s")
    assert f"room for {room} more = p90 of jobs arriving in 95 s" in sizing.reason


def test_no_room_when_a_new_instance_is_fast_enough() -> None:
    relaxed = QueueWaitSlo.model_validate({"queueWait": "2m"})
    sizing = slo_sizing(relaxed, history({SLOT: 60}), MONDAY_0900, maximum=100)
    assert (sizing.warm, sizing.spare_room) == (0, 0)
    assert "no room kept (a new instance is online in 95 s <= 120 s)" in sizing.reason


def test_slo_sizing_stays_within_max_and_its_windows() -> None:
    busy = history({SLOT: 600, SLOT - 12: 600})  # 2 jobs/s at 08:00 and 09:00
    capped = slo_sizing(TEN_SECONDS, busy, MONDAY_0900, maximum=10)
    assert (capped.warm, capped.spare_room) == (10, 0)
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
    assert inside.spare_room > 0


SUNDAY_0300_SLOT = 6 * 288 + 36
#: last week: ten matrices around Monday 09:00 UTC (850 jobs) and one of 20 on Sunday 03:00
MATRICES = {SLOT + i: jobs for i, jobs in enumerate(range(40, 140, 10))}
MATRICES[SUNDAY_0300_SLOT] = 20
MATRIX_WEEK = ArrivalHistory(
    {WEEK - 1: dict(MATRICES)},
    {WEEK - 1: 0, WEEK: 0},
    {WEEK - 1: {slot: jobs * jobs for slot, jobs in MATRICES.items()}},
)


def test_large_runs_get_room_at_the_times_they_come() -> None:
    large = MATRIX_WEEK.large_runs(WEEK, 0.5, 0.9)
    # a quarter of the 10% budget for the tails: sum (L - 115)+ = 15 + 5 = 20 <= 2.5% of 870,
    # sum (L - 114)+ = 22 is not
    assert large.room() == 115
    # a quarter for quiet times: Sunday's 20 jobs are 2.3% of 870, so no room then
    assert large.held_at(SLOT) and not large.held_at(SUNDAY_0300_SLOT)
    assert large.held_share == pytest.approx(850 / 870)
    sizing = slo_sizing(SLO, MATRIX_WEEK, MONDAY_0900, maximum=200)
    assert sizing.spare_room == 115
    assert (
        "room for 115 more = 97.5% of the jobs of the 11 large runs learned (20-130 jobs), "
        "held at times bringing 98% of them" in sizing.reason
    )
    # largeRuns: false keeps the objective on the pool's jobs as a whole
    pooled = SLO.model_copy(update={"large_runs": False})
    assert "large runs" not in slo_sizing(pooled, MATRIX_WEEK, MONDAY_0900, 200).reason
    # an hour before the matrices the pooled 4 h see them all: the room is ready in time;
    # three hours before, and on Sunday, the job-weighted count alone
    before = slo_sizing(SLO, MATRIX_WEEK, MONDAY_0900 - datetime.timedelta(minutes=60), 200)
    assert before.spare_room == 115
    for quiet in (
        MONDAY_0900 - datetime.timedelta(hours=3),
        MONDAY_0900 + datetime.timedelta(days=6, hours=-6),
    ):
        sizing = slo_sizing(SLO, MATRIX_WEEK, quiet, maximum=200)
        assert "large runs" not in sizing.reason and sizing.spare_room < 30, quiet


def test_room_for_large_runs_stays_within_a_repository_s_cap_and_max() -> None:
    # 30 single jobs in every slot of the 4 h around Monday 09:00 UTC, and one 90-job matrix
    counts = {slot: 30 for slot in range(SLOT - 24, SLOT + 24)}
    squares = dict(counts)
    counts[SLOT] += 90
    squares[SLOT] += 90 * 90
    one_matrix = ArrivalHistory({WEEK - 1: counts}, {WEEK - 1: 0, WEEK: 0}, {WEEK - 1: squares})
    assert one_matrix.large_runs(WEEK, 0.5, 0.9).room() == 88  # (90 - 88) = 2 <= 2.25
    now = MONDAY_0900 + datetime.timedelta(hours=1)
    sizing = slo_sizing(SLO, one_matrix, now, maximum=100)
    assert sizing.spare_room == 88
    assert "the jobs of the large run learned (90 jobs)" in sizing.reason
    # a repository's run gets at most maxPerRepository runners: room beyond it serves nobody
    assert slo_sizing(SLO, one_matrix, now, maximum=100, per_run=60).spare_room == 60
    assert slo_sizing(SLO, one_matrix, now, maximum=50, per_run=60).spare_room == 50
    # runs under LARGE_RUN_JOBS are the job-weighted count's alone
    small = ArrivalHistory({WEEK - 1: {SLOT: 19}}, {WEEK - 1: 0, WEEK: 0}, {WEEK - 1: {SLOT: 361}})
    assert small.large_runs(WEEK, 0.5, 0.9) == LargeRuns()


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


def test_the_objective_sizes_room_and_warm_runners_and_the_plan_says_why(spec_dir) -> None:
    spec_set = load_specs([spec_dir({"pool.yaml": SLO_POOL, "cp.yaml": CAPACITY_PROVIDER})])
    assert spec_set.ok, spec_set.errors
    desired = render_desired(spec_set, MONDAY_0900, "us-east-1", {}, {"pool-a": history({SLOT: 6})})
    pool = desired.pools["pool-a"]
    # 0.02 jobs/s: 1.9 expected in 95 s -> room for 3; 30 s is met from room: the floor idle 1
    assert (pool.idle_target, pool.spare_room) == (1, 3)
    count, why = pool.target(busy=0)
    assert count == 1
    assert "idle 1 = 1, min 0, max 10 (no schedule active, >= slo: 0 warm (on spare room" in why
    assert "room for 3 more = p90 of jobs arriving in 95 s" in why
    # a 10 s target needs warm runners: 0.2 jobs/s -> 6 warm over the floor, room up to max 10
    fast = load_specs([spec_dir({"pool.yaml": SLO_POOL.replace("30s", "10s")})])
    busier = render_desired(fast, MONDAY_0900, "us-east-1", {}, {"pool-a": history({SLOT: 60})})
    pool = busier.pools["pool-a"]
    assert (pool.idle_target, pool.spare_room) == (6, 4)
    count, why = pool.target(busy=0)
    assert count == 6
    assert "slo: 6 warm = p90 of jobs arriving in 25 s" in why
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
        store.record("pool-a", last_week, run_id=7)
    store.record("pool-a", at, run_id=8)
    store.record("pool-b", last_week + datetime.timedelta(minutes=5), run_id=9)
    loaded = store.load(["pool-a", "pool-b", "pool-c"], at)
    assert loaded["pool-a"].counts[WEEK - 1] == {SLOT: 3}
    assert loaded["pool-a"].counts[WEEK] == {SLOT: 1}
    assert loaded["pool-a"].observed_from == {WEEK - 1: SLOT}
    assert loaded["pool-b"].counts[WEEK - 1] == {SLOT + 1: 1}
    assert loaded["pool-c"].counts.get(WEEK - 1, {}) == {}
    assert loaded["pool-a"].squares[WEEK - 1] == {SLOT: 9}  # one run of 3 jobs: 1 + 3 + 5
    assert loaded["pool-a"].learned(WEEK, SLOT, 0.5) == Arrivals(3 / SLOT_SECONDS, 3.0)
    # history older than the model reads is not loaded
    store.record("pool-a", at - datetime.timedelta(days=7 * 6), run_id=10)
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
    assert (item[f"s{SLOT}"], item[f"q{SLOT}"]) == ({"N": "1"}, {"N": "1"})
    assert int(item["ttl"]["N"]) > MONDAY_0900.timestamp() + 4 * 7 * 86400
