"""The deposed-leader scenario of issue 14, measured: two `run` replicas with leader election
on the sandbox; the leader is paused (SIGSTOP) during a scale-out, the standby takes over and
finishes it, the old leader is resumed (SIGCONT). How many runners did the old leader start
after it was resumed, and how far above `max` did the pool go?

    .venv/bin/python bench/deposed_leader.py [--idle 30] [--lease 15,10,2] [--code DIR]

The replicas reach AWS through `EcsListingLag` (no listing lag) with 0.3 s before each
RunTask, so that the pause lands early in the scale-out. `--code DIR` runs the two replicas
from another checkout of the package (for example the commit before fencing, `git archive
<commit> reconciler | tar -x -C DIR`), to compare. Its tasks carry no epoch tag; then the
pool's peak above the idle target shows the old leader's extra starts.

Runner tasks carry the lease epoch of the term that started them (`ecs-reconciler:lease-epoch`),
so the old leader's starts are counted from ECS itself. Prints one line per phase and a
summary; exit 0 when the old leader started nothing after the pause and the pool stayed
within max.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from reconciler.plan.state import LEASE_EPOCH_TAG, STARTED_BY
from reconciler.sandbox.proxy import EcsListingLag
from reconciler.sandbox.scenario import Sandbox, run_command

REPO = Path(__file__).resolve().parent.parent
CLUSTER = "ci-runners"
MAX = 40


def specs_in(directory: Path) -> Path:
    """The example capacity providers and the platform pool alone, with small tasks."""
    target = directory / "specs"
    target.mkdir()
    shutil.copy(REPO / "specs" / "capacity-providers.yaml", target)
    pool = target / "org-platform-dind.yaml"
    text = (REPO / "specs" / "org-platform-dind.yaml").read_text()
    for old, new in (("cpu: 2048", "cpu: 512"), ("memory: 4096", "memory: 1024")):
        text = text.replace(old, new)
    pool.write_text(text)
    return target


def start(
    sandbox: Sandbox, specs: Path, identity: str, lease: str, code: str | None, endpoint: str
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        run_command(specs, 2, identity=identity, lease_timing=lease),
        env={
            **os.environ,
            **sandbox.environment(),
            "AWS_ENDPOINT_URL": endpoint,
            **({"PYTHONPATH": code} if code else {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=specs.parent,  # not the repository: `-m` puts the working directory first
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    return process, banner.split("serving ", 1)[1].strip()


def leads(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(json.load(response)["controller"]["leader"])
    except OSError:
        return False


def epochs(sandbox: Sandbox) -> Counter[str]:
    """Running runner tasks by the lease epoch that started them."""
    ecs = sandbox.clients(read_only=True).ecs
    arns = ecs.list_tasks(cluster=CLUSTER, startedBy=STARTED_BY, desiredStatus="RUNNING")[
        "taskArns"
    ]
    counted: Counter[str] = Counter()
    for index in range(0, len(arns), 100):
        described = ecs.describe_tasks(
            cluster=CLUSTER, tasks=arns[index : index + 100], include=["TAGS"]
        )["tasks"]
        for task in described:
            tags = {tag["key"]: tag["value"] for tag in task.get("tags", [])}
            counted[tags.get(LEASE_EPOCH_TAG, "?")] += 1
    return counted


def wait(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if condition():
            return time.monotonic() - began
        time.sleep(poll)
    raise SystemExit(f"deposed_leader: timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=30, help="idle target of the scale-out")
    parser.add_argument("--lease", default="15,10,2", help="DURATION,RENEW,RETRY")
    parser.add_argument("--code", help="run the replicas from this checkout of the package")
    args = parser.parse_args()
    duration = float(args.lease.split(",")[0])
    with tempfile.TemporaryDirectory() as tmp:
        specs = specs_in(Path(tmp))
        with (
            Sandbox([specs], mode="process") as sandbox,
            EcsListingLag(sandbox.endpoint_url, lag=0.0) as proxy,
        ):
            proxy.latency["RunTask"] = 0.3
            old, old_url = start(sandbox, specs, "old-leader", args.lease, args.code, proxy.url)
            new = None
            try:
                wait(lambda: leads(old_url), 60, "the first leader")
                wait(lambda: sum(epochs(sandbox).values()) == 2, 60, "the first 2 runners")
                [old_epoch] = epochs(sandbox)
                new, new_url = start(sandbox, specs, "standby", args.lease, args.code, proxy.url)
                pool = specs / "org-platform-dind.yaml"
                pool.write_text(
                    pool.read_text().replace("    idle: 2\n", f"    idle: {args.idle}\n")
                )
                ecs = sandbox.clients(read_only=True).ecs
                wait(
                    lambda: len(ecs.list_tasks(cluster=CLUSTER)["taskArns"]) > 2,
                    60,
                    "the scale-out to begin",
                    poll=0.0,
                )
                os.kill(old.pid, signal.SIGSTOP)
                paused = epochs(sandbox)
                print(f"paused the leader after it started {paused[old_epoch] - 2} runner(s)")
                took = wait(lambda: leads(new_url), duration + 30, "the standby to take over")
                print(f"standby leads {took:.1f}s after the pause")
                wait(
                    lambda: sum(epochs(sandbox).values()) >= args.idle,
                    60,
                    "the standby's scale-out",
                )
                os.kill(old.pid, signal.SIGCONT)
                print("resumed the old leader; watching it for 3 resync periods + a lease")
                peak, deadline = 0, time.monotonic() + duration + 6
                while time.monotonic() < deadline:
                    peak = max(peak, sum(epochs(sandbox).values()))
                    time.sleep(0.2)
                final = epochs(sandbox)
            finally:
                for process in (old, new):
                    if process is not None and process.poll() is None:
                        os.kill(process.pid, signal.SIGCONT)
                        process.kill()
                        process.wait()
    print(f"runners by lease epoch at the pause: {dict(paused)}; at the end: {dict(final)}")
    extra = max(0, peak - args.idle)
    if old_epoch == "?":  # replicas without epoch tags (--code): only the total tells
        print(f"deposed_leader: pool peak {peak}: {extra} runner(s) above the target {args.idle}")
        return 0 if extra == 0 else 1
    after_resume = final[old_epoch] - paused[old_epoch]
    print(
        f"deposed_leader: {after_resume} runner(s) started by the old leader after the pause; "
        f"pool peak {peak}: {extra} above the target {args.idle} (max {MAX})"
    )
    return 0 if after_resume == 0 and extra == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
