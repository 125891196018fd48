"""Run a command with the wall clock of every Python process in it shifted to a given time.

    python tools/timeshift.py 2026-11-30T10:30:00+09:00 -- make test

Proves that the suite and the sandbox do not depend on the hour they run at: CI runs the
suite once at a time inside the example specs' schedule window. Only Python processes are
shifted (through tools/timeshift/sitecustomize.py and time-machine); monotonic time is real.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "timeshift"


def main(argv: list[str]) -> int:
    """Parse `AT -- COMMAND...`, export the offset, and exec the command."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: timeshift.py ISO-8601-TIME-WITH-OFFSET -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        at = datetime.datetime.fromisoformat(argv[0])
    except ValueError:
        print(f"timeshift: {argv[0]!r} is not an ISO 8601 time", file=sys.stderr)
        return 2
    if at.tzinfo is None:
        print(f"timeshift: {argv[0]!r} needs a UTC offset, e.g. +09:00", file=sys.stderr)
        return 2
    now = datetime.datetime.now(datetime.UTC)
    offset = (at - now).total_seconds()
    environment = dict(os.environ)
    environment["ECS_RECONCILER_CLOCK_OFFSET"] = f"{offset:.3f}"
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(HERE), environment.get("PYTHONPATH", "")) if part
    )
    print(f"timeshift: every Python process runs at {at.isoformat()} (offset {offset:+.0f} s)")
    sys.stdout.flush()
    os.execvpe(argv[2], argv[2:], environment)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
