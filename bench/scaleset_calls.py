"""GitHub calls of one idle scale-set pool over a simulated hour.

    .venv/bin/python bench/scaleset_calls.py [--hours 1] [--poll 50] [--admin-token 3600]
        [--queue-token 3600]

A `ScaleSetListener` against the simulated GitHub + Actions service with no jobs: each long
poll is answered 202 after a short real wait, and the shared clock is advanced by `--poll`
seconds per poll (GitHub holds a poll about 50 s), so `--hours` of wall time pass in
seconds. Admin tokens (`--admin-token` s) and queue tokens (`--queue-token` s) expire on that
clock, exactly as the service would make them: the listener refreshes the first before its
JWT's exp, the second on the 401. Prints the calls by endpoint, which of them count against
the REST rate limit (api.github.com), and calls per hour.
"""

from __future__ import annotations

import argparse
import time

from reconciler.demand.scaleset import ScaleSetDemand, ScaleSetListener
from reconciler.github import GitHubClient, Scope, TokenAuth
from reconciler.github.scaleset.pools import ScaleSetPool, ScaleSetPools
from reconciler.sandbox.github_server import FakeGitHub


class SteppedClock:
    """A wall clock that moves only when told (epoch seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=50.0, help="seconds GitHub holds a poll")
    parser.add_argument("--admin-token", type=float, default=3600.0)
    parser.add_argument("--queue-token", type=float, default=3600.0)
    args = parser.parse_args()

    clock = SteppedClock()
    with FakeGitHub(tokens=["bench"], clock=clock) as github:
        github.actions.poll_timeout = 0.01
        github.actions.admin_token_lifetime = args.admin_token
        github.actions.queue_token_lifetime = args.queue_token
        github.actions.session_idle_timeout = 10 * args.poll
        rest = GitHubClient(github.url, TokenAuth("bench"), clock=clock)
        pools = ScaleSetPools(rest, clock=clock)
        pool = ScaleSetPool("idle-pool", Scope("organization", "acme"), "Default", ("idle",), 0, 10)
        pools.set_pools({pool.name: pool})
        listener = ScaleSetListener(pool, pools, ScaleSetDemand(clock), "bench")
        listener.step()  # start-up: scale set and session (not counted below)
        client = pools.client(pool.scope)
        rest.calls.clear()
        client.calls.clear()
        started = time.monotonic()
        polls = round(args.hours * 3600 / args.poll)
        for _ in range(polls):
            clock.now += args.poll
            listener.step()
        elapsed = time.monotonic() - started
        listener.close()

    rest_calls = sum(rest.calls.values())
    service_calls = sum(client.calls.values())
    print(f"{polls} polls of {args.poll:.0f} s = {args.hours:g} h simulated in {elapsed:.1f} s")
    print("REST API host (registration-token is a REST call; runner-registration uses RemoteAuth):")
    for endpoint, count in sorted(rest.calls.items()):
        print(f"  {count:5d}  {endpoint}")
    print("Actions service and message queue (not the REST rate limit):")
    for endpoint, count in sorted(client.calls.items()):
        print(f"  {count:5d}  {endpoint}")
    per_hour = (rest_calls + service_calls) / args.hours
    print(
        f"calls per hour per idle scale set: {per_hour:.0f} "
        f"({rest_calls / args.hours:.0f} REST, {service_calls / args.hours:.0f} Actions service)"
    )
    print(f"listener errors: {listener.stats.errors}, sessions opened: {listener.stats.sessions}")


if __name__ == "__main__":
    main()
