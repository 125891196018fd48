"""GitHub's secondary limits kept on our side (issue 19): a write budget per sliding minute
and hour, a concurrency cap shared by every thread, and the `run` flags that set them and
the bind workers and trigger coalescing. Pure: a fake clock, no I/O."""

from __future__ import annotations

import pytest

from reconciler.cli.main import build_parser
from reconciler.controller.loop import Triggers
from reconciler.github.limits import BudgetExceeded, SecondaryLimits, WriteBudget


class FakeTime:
    """A monotonic clock that `sleep` advances."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_writes_wait_for_a_place_in_the_sliding_minute_and_hour() -> None:
    time = FakeTime()
    limits = SecondaryLimits(budget=WriteBudget(3, 5), clock=time.clock, sleep=time.sleep)
    waits = []
    for _ in range(3):  # the minute's 3 places: at once
        waits.append(limits.reserve_write(max_wait=600))
        time.now += 1.0
    assert waits == [0.0, 0.0, 0.0]
    # the 4th: when the first write (at 1000) leaves the minute, 57 s from now (1003)
    assert limits.reserve_write(max_wait=600) == pytest.approx(57.0)
    # the 5th, asked at the same moment: after the 2nd leaves it (1061), first come first served
    assert limits.reserve_write(max_wait=600) == pytest.approx(58.0)
    # the hour holds 5: the 6th waits for the first write to leave the hour (1000 + 3600)
    assert limits.reserve_write(max_wait=7200) == pytest.approx(3597.0)
    # more than the caller will wait: refused, and no place is taken
    with pytest.raises(BudgetExceeded, match="3/min, 5/h"):
        limits.reserve_write(max_wait=300)
    assert len(limits._writes) == 6


def test_reads_and_an_unlimited_client_never_wait_and_concurrency_is_capped() -> None:
    time = FakeTime()
    limits = SecondaryLimits(concurrency=2, clock=time.clock, sleep=time.sleep)
    for _ in range(500):  # no budget: writes pass
        with limits.slot(writes=True):
            pass
    assert time.slept == []
    with limits.slot(writes=False), limits.slot(writes=True):  # two requests in flight
        assert not limits._in_flight.acquire(blocking=False)  # a third would wait
    assert limits._in_flight.acquire(blocking=False)  # answered: places free again
    limits._in_flight.release()


def test_the_slot_sleeps_out_the_wait_before_sending() -> None:
    time = FakeTime()
    limits = SecondaryLimits(budget=WriteBudget(1, 60), clock=time.clock, sleep=time.sleep)
    with limits.slot(writes=True):
        pass
    with limits.slot(writes=True):
        assert time.now == pytest.approx(1060.0)  # sent only once the minute's place freed
    assert time.slept == [pytest.approx(60.0)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80/500", WriteBudget(80, 500)),
        ("80", WriteBudget(80, 500)),
        ("5", WriteBudget(5, 300)),
        ("900", WriteBudget(900, 900)),
        ("OFF", None),
    ],
)
def test_write_budget_parses(text: str, expected: WriteBudget | None) -> None:
    assert WriteBudget.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fast", "expected PER_MINUTE"),
        ("80/x", "expected PER_MINUTE"),
        ("-1", "expected PER_MINUTE"),
        ("0", "at least 1 request"),
        ("100/50", "cannot allow fewer requests than its minute"),
    ],
)
def test_bad_write_budgets_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WriteBudget.parse(text)
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        SecondaryLimits(concurrency=0)


def test_run_takes_the_burst_flags() -> None:
    args = build_parser().parse_args(
        [
            "run",
            "--bind-workers",
            "16",
            "--coalesce-ms",
            "100",
            "--coalesce-max-ms",
            "3000",
            "--github-write-budget",
            "180/2000",
            "--github-concurrency",
            "20",
        ]
    )
    assert (args.bind_workers, args.coalesce_ms, args.coalesce_max_ms) == (16, 100, 3000)
    assert (args.github_write_budget, args.github_concurrency) == (WriteBudget(180, 2000), 20)
    defaults = build_parser().parse_args(["run"])
    assert defaults.github_write_budget == WriteBudget(80, 500)  # GitHub's documented budget
    assert (defaults.bind_workers, defaults.coalesce_ms, defaults.coalesce_max_ms) == (
        8,
        250,
        2000,
    )


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--bind-workers", "0", "--bind-workers takes a whole number from 1 to 64, not '0'"),
        ("--bind-workers", "many", "from 1 to 64, not 'many'"),
        ("--coalesce-ms", "-5", "--coalesce-ms takes a whole number from 0 to 10000"),
        ("--coalesce-max-ms", "99999", "from 0 to 60000, not '99999'"),
        ("--github-write-budget", "lots", "expected PER_MINUTE[/PER_HOUR]"),
        ("--github-concurrency", "0", "a whole number of at least 1, not '0'"),
    ],
)
def test_run_refuses_bad_burst_flags(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", flag, value])
    assert message in capsys.readouterr().err


def test_triggers_gather_a_burst_until_it_is_quiet_at_most_coalesce_max() -> None:
    now = [0.0]
    triggers = Triggers(coalesce=0.25, clock=lambda: now[0], coalesce_max=2.0)
    triggers.fire("webhook: job 1 queued")
    rings = iter(range(2, 100))

    def ring_every_100ms() -> None:  # what the condition's wait would see: a ring each 0.1 s
        now[0] += 0.1
        triggers._reasons.append(f"webhook: job {next(rings)} queued")

    triggers._condition.wait = lambda timeout=None: ring_every_100ms()  # type: ignore[method-assign]
    reasons = triggers.wait(timeout=60.0)
    assert now[0] == pytest.approx(2.0)  # never quiet for 0.25 s: cut at coalesce_max
    assert len(reasons) == 21
    now[0] = 10.0
    triggers.fire("webhook: job 500 queued")

    def quiet(timeout: float | None = None) -> None:
        now[0] += timeout or 0.0

    triggers._condition.wait = quiet  # type: ignore[method-assign]
    assert triggers.wait(timeout=60.0) == ["webhook: job 500 queued"]
    assert now[0] == pytest.approx(10.25)  # a lone ring waits coalesce only
    with pytest.raises(ValueError, match="must be at least coalesce"):
        Triggers(coalesce=1.0, coalesce_max=0.5)


def test_run_takes_the_registration_grace_of_its_janitor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert build_parser().parse_args(["run"]).registration_grace == 120.0
    grace = build_parser().parse_args(["run", "--registration-grace", "30"]).registration_grace
    assert grace == 30.0
    for bad in ("0", "-5", "soon", "inf", "nan"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", "--registration-grace", bad])
        assert f"--registration-grace takes seconds above 0, not '{bad}'" in capsys.readouterr().err
