"""The chaos soak of issue 14: two controller replicas with leader election on the sandbox,
a job load from the trace generator, faults in front of AWS, GitHub and DynamoDB and on the
processes, and the invariants that must hold whatever fails (reconciler/sandbox/soak.py).

    .venv/bin/python bench/soak.py [--minutes 5] [--seed 1] [--lease 15,10,2]

Prints the faults injected by kind and the invariants, and a last line
`soak: K/K invariants held, F faults injected`; exit 0 only if every invariant held. Seeded
(the load, the fault schedule and every per-request fault decision; which request meets a
fault still depends on timing), bounded (the chaos phase, then at most --settle seconds),
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from reconciler.sandbox.soak import Soak, SoakSettings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="chaos phase (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of load and faults")
    parser.add_argument("--lease", default="15,10,2", help="DURATION,RENEW,RETRY (run's default)")
    parser.add_argument("--settle", type=float, default=300.0, help="max seconds to settle")
    parser.add_argument("--max-runners", type=int, default=6, help="the pool's max")
    parser.add_argument("--jobs-per-minute", type=float, default=10.0, help="load")
    parser.add_argument("--no-faults", action="store_true", help="the same run without faults")
    parser.add_argument("--keep", type=Path, help="a new directory for the specs and logs, kept")
    args = parser.parse_args()
    try:
        lease = tuple(float(part) for part in args.lease.split(","))
        if len(lease) != 3:
            raise ValueError(f"--lease must be DURATION,RENEW,RETRY seconds, got {args.lease!r}")
        settings = SoakSettings(
            minutes=args.minutes,
            seed=args.seed,
            lease=(lease[0], lease[1], lease[2]),
            settle_timeout=args.settle,
            max_runners=args.max_runners,
            jobs_per_minute=args.jobs_per_minute,
            faults=not args.no_faults,
        )
    except ValueError as error:
        parser.error(str(error))
    began = time.monotonic()
    if args.keep is not None and args.keep.exists():
        parser.error(f"--keep {args.keep}: exists already")
    report = Soak(
        settings,
        keep=args.keep,
        progress=lambda m: print(
            f"[{time.monotonic() - began:6.1f}s] {m}", file=sys.stderr, flush=True
        ),
    ).run()
    print(
        f"soak: seed {args.seed}, {args.minutes:g} min of chaos, "
        f"{time.monotonic() - began:.0f}s in all"
    )
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
