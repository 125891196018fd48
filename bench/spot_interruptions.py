"""What spot interruptions cost each policy, in the simulator (issue 18, spot).

Every instance is spot (`--spot-share 1`) and gets interruption notices at the given rates per
instance-hour; an interrupted instance is DRAINING for `spot_notice_s` (120 s), then
reclaimed: its runners die, a job running on one fails. Per policy and rate: interruptions,
jobs failed, idle runners still on the instance when it went, queue wait p90, USD.

    .venv/bin/python bench/spot_interruptions.py [--days 1] [--seed 3]
        [--rates 0,0.05,0.2] [--policy reconciler --policy arc ...]

The reconciler sees the DRAINING instance on its next cycle (the planner's spot draining:
idle runners stopped and started elsewhere); `arc` tops its runner set up only once the node
is gone; `static` replaces the instance (its Auto Scaling group) after the reclaim; `tagr`
runs one job per instance. Interruption times are drawn from `spot_seed` per launched
instance, so policies that launch different instances see different interruptions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from reconciler.simulate.parameters import SimulationParameters
from reconciler.simulate.report import run_policy
from reconciler.simulate.trace import generate_trace, read_trace, write_trace
from reconciler.spec.loader import load_specs

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--rates", default="0,0.05,0.2", help="notices per instance-hour")
    parser.add_argument("--policy", action="append", help="default: reconciler, arc, static")
    args = parser.parse_args(argv)
    policies = args.policy or ["reconciler", "arc", "static"]
    spec_set = load_specs([REPO / "specs"])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "trace.jsonl"
        with open(path, "w") as out:
            write_trace(generate_trace(args.days, seed=args.seed), out)
        jobs = read_trace(path)
    print(f"{len(jobs)} jobs, {args.days} day(s), seed {args.seed}, every instance spot")
    header = ("rate/h", "policy", "reclaimed", "jobs failed", "idle lost", "p90 s", "USD")
    print("  ".join(f"{h:>11}" for h in header))
    for rate in (float(r) for r in args.rates.split(",")):
        parameters = SimulationParameters(spot_share=1.0, spot_interruptions_per_hour=rate)
        for policy in policies:
            print(f"  {policy} at {rate}/h ...", file=sys.stderr)
            figures = run_policy(policy, jobs, spec_set, parameters).to_json()
            spot = figures["spot"]
            row = (
                f"{rate:g}",
                policy,
                spot["interruptions"],
                spot["jobs_interrupted"],
                spot["idle_runners_reclaimed"],
                f"{figures['queue_wait_s']['p90']:.0f}",
                f"{figures['cost_usd']:.0f}",
            )
            print("  ".join(f"{v!s:>11}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
