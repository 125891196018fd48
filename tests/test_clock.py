"""Only reconciler/clock.py reads the wall clock; everything else is handed a clock."""

from __future__ import annotations

import ast
import datetime
from pathlib import Path

import pytest

from reconciler.clock import FixedClock

PACKAGE = Path(__file__).resolve().parent.parent / "reconciler"
CLOCK_MODULE = PACKAGE / "clock.py"

#: module -> attributes that read the wall clock (called or passed on as a clock)
WALL_CLOCK_READS = {
    "time": {"time", "time_ns", "localtime", "gmtime", "ctime", "asctime", "strftime"},
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
}


def wall_clock_reads(source: str) -> list[tuple[int, str]]:
    """(line, expression) of every wall-clock read in a module's source."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if node.attr in WALL_CLOCK_READS.get(name, ()):
                found.append((node.lineno, f"{name}.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            for alias in node.names:
                if alias.name in WALL_CLOCK_READS[node.module]:
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
    return found


def test_no_module_but_clock_reads_the_wall_clock() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {expression}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != CLOCK_MODULE
        for line, expression in wall_clock_reads(path.read_text())
    ]
    assert offenders == [], "read the time from an injected clock (reconciler/clock.py):\n" + (
        "\n".join(offenders)
    )


@pytest.mark.parametrize(
    "source",
    [
        "import time\nx = time.time()",
        "import time\ndef f(clock=time.time): ...",
        "import datetime\nx = datetime.datetime.now(datetime.UTC)",
        "from datetime import datetime\nx = datetime.utcnow()",
        "from datetime import date\nx = date.today()",
        "from time import time",
        "import time\nx = time.strftime('%H:%M')",
    ],
)
def test_the_walk_finds_every_form_of_wall_clock_read(source: str) -> None:
    assert wall_clock_reads(source)


def test_durations_and_other_time_functions_are_allowed() -> None:
    source = (
        "import time, datetime\n"
        "a = time.monotonic()\n"
        "time.sleep(1)\n"
        "b = datetime.datetime.fromtimestamp(0, datetime.UTC)\n"
        "c = datetime.datetime.fromisoformat('2026-01-01T00:00:00+00:00')\n"
    )
    assert wall_clock_reads(source) == []


def test_fixed_clock_stands_still_until_advanced() -> None:
    at = datetime.datetime(
        2026, 11, 30, 10, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=9))
    )
    clock = FixedClock(at)
    assert clock.now() == at and clock.now().tzinfo == datetime.UTC
    assert clock.time() == at.timestamp()
    clock.advance(90)
    assert clock.now() - at == datetime.timedelta(seconds=90)
    with pytest.raises(ValueError, match="aware"):
        FixedClock(datetime.datetime(2026, 1, 1))
