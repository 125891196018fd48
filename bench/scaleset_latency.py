"""Scale-set message to RunTask: how long from GitHub giving a job to a scale-set pool to
the controller starting a runner task for it.

    .venv/bin/python bench/scaleset_latency.py [--jobs 20]

The example platform pool alone (demand from a scale set, idle 0, min 0) on the sandbox
(moto's HTTP server in a process, the simulated GitHub + Actions service in this one); the
real controller loop runs on its thread with its scale-set listener. One job at a time is
given to the scale set (the JobAvailable message is ready at once, the listener's long poll
returns); the clock stops at the controller's next ``ecs:RunTask`` call. The job then waits
(it is never started) so each job adds exactly one runner. Prints p50/p90/max.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.demand.scaleset import ScaleSetDemand, ScaleSetListeners
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.jit import JitProvisioner
from reconciler.github.registry import GitHubRunnerStates
from reconciler.github.scaleset.pools import ScaleSetPools
from reconciler.sandbox.scenario import SANDBOX_GITHUB_TOKEN, Sandbox

REPO = Path(__file__).resolve().parent.parent
LABELS = ["self-hosted", "linux", "x64", "dind"]


def write_specs(directory: Path) -> Path:
    """The example capacity providers and the platform pool, scale-set demand, idle 0."""
    directory.mkdir()
    shutil.copy(REPO / "specs" / "capacity-providers.yaml", directory)
    text = (REPO / "specs" / "org-platform-dind.yaml").read_text()
    for old, new in (
        ("cpu: 2048", "cpu: 512"),
        ("memory: 4096", "memory: 1024"),
        ("    idle: 2\n", "    idle: 0\n"),
        ("    maxPerRepository: 10\n", ""),
        ("  deletionPolicy: Drain", "  deletionPolicy: Drain\n  demand:\n    source: scaleSet"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    (directory / "pool.yaml").write_text(text)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        specs = write_specs(Path(temporary) / "specs")
        with Sandbox([specs], mode="process", github=True) as sandbox:
            assert sandbox.github is not None
            actions = sandbox.github.actions
            actions.poll_timeout = 50.0  # as GitHub holds a poll
            clients = sandbox.clients()
            github = GitHubClient(sandbox.github.url, TokenAuth(SANDBOX_GITHUB_TOKEN))
            pools = ScaleSetPools(github)
            demand = ScaleSetDemand()
            controller = Controller(
                ControllerSettings(spec_paths=[specs], resync_interval=30.0),
                clients,
                GitHubRunnerStates(github, grace=1.0, boot_timeout=600),
                provisioner=JitProvisioner(github, clients.client("ssm"), scale_sets=pools),
                github=github,
                scale_set_listeners=ScaleSetListeners(pools, demand, "bench", lambda: True),
            )
            loop = threading.Thread(target=controller.run, daemon=True)
            loop.start()
            deadline = time.monotonic() + 60
            while demand.latest("platform-linux-dind") is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(2.0)  # the first cycles (task definition) are done
            latencies = []
            for job in range(args.jobs):
                before = clients.calls["ecs:RunTask"]
                started = time.monotonic()
                request = actions.queue_job("/orgs/platform", LABELS, "platform/api", job)
                assert request is not None, "no scale set took the job"
                while clients.calls["ecs:RunTask"] == before:
                    if time.monotonic() - started > 30:
                        raise SystemExit(f"job {job}: no RunTask within 30 s")
                    time.sleep(0.002)
                latencies.append(time.monotonic() - started)
                time.sleep(0.5)  # let the cycle that started it finish
            controller.stop()
            loop.join(timeout=60)
            github.close()
    latencies.sort()
    p50 = statistics.median(latencies)
    p90 = latencies[int(0.9 * (len(latencies) - 1))]
    print(
        f"{len(latencies)} jobs: message -> RunTask p50 {p50:.3f} s, p90 {p90:.3f} s, max "
        f"{latencies[-1]:.3f} s"
    )


if __name__ == "__main__":
    main()
