"""`ecs-reconciler sandbox`: the whole loop on a local, seeded AWS account (moto over HTTP).

`sandbox` (or `sandbox run`): validate -> plan -> apply -> plan; exits 0 only if the last
plan is empty. `sandbox live` (`make run`): the controller with a simulated GitHub sending
bursts of jobs, and a live view of pools and runners. `sandbox serve`: keep a seeded AWS
endpoint and simulated GitHub running (ECS agent, runners and jobs included) and print the
`export` lines that point `plan`, `apply`, `run` or the AWS CLI at them.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import threading
import time
from typing import Any

from ..aws.clients import AwsClients
from ..aws.observe import Observer
from ..clock import utc_now
from ..controller.loop import Controller, ControllerSettings
from ..controller.server import ControllerServer
from ..demand import (
    DemandBook,
    DynamoDemandStore,
    QueuedJobAudit,
    Redeliverer,
    WebhookReceiver,
)
from ..demand.arrivals import DynamoArrivalStore
from ..demand.scaleset import ScaleSetDemand, ScaleSetListeners
from ..github import GitHubClient, TokenAuth
from ..github.janitor import RunnerJanitor
from ..github.jit import JitProvisioner
from ..github.registry import GitHubRunnerStates
from ..github.scaleset.pools import ScaleSetPools
from ..plan.guard import GuardPolicy
from ..plan.render_text import render_text
from ..reconcile import plan_cycle
from ..sandbox.runners import TaskTagRunnerStates
from ..sandbox.scenario import JIT_KEY_ALIAS, SANDBOX_GITHUB_TOKEN, Sandbox
from ..sandbox.world import BurstTraffic, GitHubWorld
from ..spec.diagnostics import render_text as render_diagnostics
from ..spec.loader import load_specs
from .apply import apply_cycle
from .common import EXIT_ERROR, EXIT_OK
from .run import WEBHOOK_SECRET_ENV
from .status import render as render_status
from .validate import describe_pool, summary


def register(verbs: Any) -> None:
    """Add the `sandbox` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "sandbox",
        help="run the whole loop on a local sandbox account (no AWS account needed)",
        description="Start moto's server on 127.0.0.1, seed it for the specs, and run "
        "validate -> plan -> apply -> plan (default), or keep it serving.",
    )
    parser.add_argument("mode", nargs="?", choices=("run", "live", "serve"), default="run")
    parser.add_argument(
        "--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="live: HTTP listener"
    )
    parser.add_argument(
        "--specs", action="append", metavar="PATH", help="spec file or directory (default specs/)"
    )
    parser.add_argument(
        "--burst-period",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="live: queue a burst of simulated jobs this often (default 60)",
    )
    parser.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8080/webhook",
        help="serve: where the simulated GitHub sends workflow_job webhooks",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="live: stop after this long (default: until Ctrl-C)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo loop or serve."""
    paths = list(args.specs or ["specs"])
    if args.mode == "serve":
        return serve(paths, args.webhook_url, args.burst_period)
    if args.mode == "live":
        return live(paths, args.listen, args.burst_period, args.duration)
    return demo(paths)


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


#: Apply rounds `sandbox run` allows before it calls the sandbox not converged: the first
#: starts what fits and grows reconciler-scaled groups, the next places the rest on the
#: instances that came up (a real account needs the same, minutes apart instead of seconds).
DEMO_ROUNDS = 4


def demo(paths: list[str]) -> int:
    """validate -> plan -> apply (until the plan is empty, bounded) -> plan, on a fresh sandbox.

    Every plan of the pass is made at the time the pass started, so a schedule window that
    opens or closes during it does not change what the pass converges to.
    """
    now = utc_now()
    _step("validate")
    with Sandbox(paths) as sandbox:
        clients = sandbox.clients()
        cycle = plan_cycle(paths, Observer(clients), TaskTagRunnerStates(clients), now)
        sys.stdout.write(render_diagnostics(cycle.spec_set.diagnostics))
        print(summary(cycle.spec_set))
        for pool in cycle.spec_set.pools:
            print(f"  {describe_pool(pool)}")
        if not cycle.spec_set.ok:
            return EXIT_ERROR
        print(f"sandbox AWS endpoint: {sandbox.endpoint_url} (region {sandbox.region})")
        _step("plan")
        print(render_text(cycle.plan), end="")
        applied = EXIT_OK
        for round_number in range(1, DEMO_ROUNDS + 1):
            _step("apply" if round_number == 1 else f"apply again (round {round_number})")
            applied = apply_cycle(cycle, clients, TaskTagRunnerStates(clients), GuardPolicy())
            sandbox.tick()  # new instances register with ECS, new runners come online
            cycle = plan_cycle(paths, Observer(clients), TaskTagRunnerStates(clients), now)
            if applied != EXIT_OK or not cycle.plan.has_changes:
                break
            print(render_text(cycle.plan), end="")
        _step("plan again")
        read_only = sandbox.clients(read_only=True)
        second = plan_cycle(paths, Observer(read_only), TaskTagRunnerStates(read_only), now)
        print(render_text(second.plan), end="")
        calls = read_only.total_calls()
        print(f"\n(the last plan made {calls} AWS API calls)")
        if applied != EXIT_OK or second.plan.has_changes:
            print("sandbox: NOT converged", file=sys.stderr)
            return EXIT_ERROR
        print("sandbox: converged, the last plan is empty.")
        return EXIT_OK


#: the simulated GitHub sends the sandbox's jobs through an organization hook (readable with
#: the sandbox's token; the App's hook would need App credentials)
SANDBOX_HOOK_OWNER = "/orgs/platform"


def serve(paths: list[str], webhook_url: str, burst_period: float) -> int:
    """Keep a seeded sandbox and its simulated GitHub running until Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: moto's process is ended
    with Sandbox(paths, mode="process", github=True, own_dynamodb=True) as sandbox:
        assert sandbox.github is not None
        secret = secrets.token_hex(16)
        world = GitHubWorld(
            sandbox.github,
            sandbox.clients(),
            sandbox.clusters,
            webhook_url,
            secret.encode(),
            hook_owner=SANDBOX_HOOK_OWNER,
        )
        traffic = BurstTraffic(world, load_specs(paths), period=burst_period)
        print("# sandbox AWS and GitHub are serving; point the CLI at them with:")
        for name, value in (sandbox.environment() | {WEBHOOK_SECRET_ENV: secret}).items():
            print(f"export {name}={value}")
        print(f"# simulated jobs are sent to {webhook_url} (`ecs-reconciler run` listens there)")
        print(
            f"# through the hook {world.hook}: `run --runner-states github --webhook-hook "
            f"{world.hook}` redelivers what failed while it was down (GitHub does not retry)"
        )
        print("# Ctrl-C stops it.", flush=True)
        try:
            while True:
                sandbox.tick()
                traffic.tick()
                world.tick()
                time.sleep(1.0)
        except KeyboardInterrupt:
            print("\nsandbox stopped.")
    return EXIT_OK


#: ANSI: cursor home, clear to the end of the screen (what a live display does, no library).
HOME_AND_CLEAR = "\x1b[H\x1b[J"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def live(paths: list[str], listen: str, burst_period: float, duration: float | None) -> int:
    """The controller on a sandbox with a simulated GitHub, live view until Ctrl-C.

    Jobs arrive in bursts (`BurstTraffic`) as signed webhooks; the controller starts one JIT
    runner per queued job (capped per repository), runners take jobs and exit, and the pool
    returns to its idle target.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    with Sandbox(paths, mode="process", github=True, own_dynamodb=True) as sandbox:
        assert sandbox.github is not None
        clients = sandbox.clients()
        github = GitHubClient(sandbox.github.url, TokenAuth(SANDBOX_GITHUB_TOKEN))
        states = GitHubRunnerStates(github, grace=5.0, boot_timeout=60.0)
        ssm = clients.client("ssm")
        store = DynamoDemandStore(clients.client("dynamodb"))
        store.ensure_table()
        book = DemandBook(store)
        scale_sets = ScaleSetPools(github)
        controller = Controller(
            ControllerSettings(spec_paths=paths, resync_interval=5.0),
            clients,
            states,
            provisioner=JitProvisioner(github, ssm, kms_key=JIT_KEY_ALIAS, scale_sets=scale_sets),
            scale_set_listeners=ScaleSetListeners(
                scale_sets, ScaleSetDemand(), "sandbox", lambda: True
            ),
            demand=book,
            github=github,
            janitor=RunnerJanitor(states, ssm, grace=30.0),
            audit=QueuedJobAudit(github, book),
            arrivals=DynamoArrivalStore(clients.client("dynamodb")),  # beside the demand
        )
        secret = secrets.token_hex(16).encode()
        host, _, port = listen.rpartition(":")
        loop = threading.Thread(target=controller.run, name="controller", daemon=True)
        server = ControllerServer(
            host,
            int(port),
            controller.status,
            loop.is_alive,
            controller.metrics.render,
            receiver := WebhookReceiver.queued(
                secret, book, controller.demand_pools, controller.on_job_event
            ),
        )
        server.start()
        world = GitHubWorld(
            sandbox.github,
            sandbox.clients(),
            sandbox.clusters,
            f"http://{server.address}/webhook",
            secret,
            hook_owner=SANDBOX_HOOK_OWNER,
        )
        assert world.hook is not None
        controller.redeliverer = Redeliverer(github, world.hook, store)
        traffic = BurstTraffic(world, load_specs(paths), period=burst_period)
        loop.start()
        print(f"controller on the sandbox; status at http://{server.address}/status")
        print(
            f"simulated GitHub at {sandbox.github.url}; a burst of jobs every {burst_period:.0f}s"
        )
        header = f"edit {', '.join(paths)} and watch it converge; Ctrl-C stops."
        print(header, flush=True)
        redraw = sys.stdout.isatty()
        shown = ""
        ends = time.monotonic() + duration if duration else None
        try:
            while ends is None or time.monotonic() < ends:
                sandbox.tick()  # new instances register with ECS
                queued = traffic.tick()
                world.tick()
                view = render_status(controller.status.to_json())
                pools = view.split("\n\n", 1)[-1]  # redraw when pools change, not every cycle
                jobs = _jobs_line(world)
                instances = _instances_line(clients)
                frame = f"{utc_now().astimezone():%H:%M:%S}  {jobs}\n{instances}\n{view}"
                if redraw:  # a terminal: the view redraws in place every second
                    print(f"{HOME_AND_CLEAR}{header}\n\n{frame}", end="", flush=True)
                elif queued or pools + instances != shown:  # a log: lines when pools change
                    print(f"\n{frame}", flush=True)
                    shown = pools + instances
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            controller.stop()
            loop.join(timeout=30)
            server.close()
            receiver.close()
            github.close()
            print(f"\nstopped. {_jobs_line(world)}")
    return EXIT_OK if not world.interrupted else EXIT_ERROR


def _instances_line(clients: AwsClients) -> str:
    """In-service instances per Auto Scaling group (the autoscaler at work)."""
    groups = clients.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    counts = (
        f"{group['AutoScalingGroupName']} "
        f"{sum(i['LifecycleState'] == 'InService' for i in group['Instances'])}"
        for group in sorted(groups, key=lambda g: g["AutoScalingGroupName"])
    )
    return "instances: " + ", ".join(counts)


def _jobs_line(world: GitHubWorld) -> str:
    jobs = list(world.jobs.values())
    done = [job for job in jobs if job.completed_at is not None and job.started_at is not None]
    waits = sorted(job.queue_wait or 0.0 for job in done)
    median = f", median queue wait {waits[len(waits) // 2]:.0f}s" if waits else ""
    return (
        f"jobs: {len(world.queued)} queued, {world.busy_runners} running, {len(done)} done"
        f"{median}, {len(world.interrupted)} lost"
    )
