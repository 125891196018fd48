"""`ecs-reconciler run`: the long-running controller.

Reconciles on start, on every spec change (watched, debounced), and at least every
`--resync` seconds; serves /healthz, /readyz and /status on `--listen`. SIGTERM or Ctrl-C
finishes the AWS action in flight and exits 0; nothing is left half-applied.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ..aws.clients import AwsClients, AwsConfigurationError
from ..aws.executor import DEFAULT_BIND_WORKERS
from ..controller.gitsource import GitSource
from ..controller.lease import LeaderElector, LeaseConfig
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
from ..demand.store import CLIENT_CONFIG
from ..github.registry import DEFAULT_GRACE_SECONDS, GitHubRunnerStates
from ..github.scaleset.pools import ScaleSetPools
from ..plan.guard import GuardPolicy
from ..spec.gitrev import GitRevisionError
from .apply import add_guard_options
from .common import (
    EXIT_ERROR,
    EXIT_OK,
    add_aws_options,
    runner_janitor,
    runner_provisioner,
    runner_state_source,
    runner_version_watch,
    spec_paths,
)

log = logging.getLogger(__name__)


WEBHOOK_SECRET_ENV = "GITHUB_WEBHOOK_SECRET"


def register(verbs: Any) -> None:
    """Add the `run` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "run",
        help="run the controller: reconcile continuously",
        description="Reconcile on start, on spec changes and every --resync seconds; serve "
        "/healthz, /readyz and /status. SIGTERM finishes the action in flight and exits.",
    )
    add_aws_options(parser)
    add_guard_options(parser)
    parser.add_argument(
        "--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="HTTP listener"
    )
    parser.add_argument(
        "--resync",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="reconcile at least this often",
    )
    parser.add_argument(
        "--revision-refresh",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="list each pool's task-definition revisions at most this often (default 300; "
        "our own changes are seen at once, revisions registered by hand within this time)",
    )
    parser.add_argument("--git-url", help="take the specs from this git repository instead")
    parser.add_argument("--branch", default="main", help="branch of --git-url to follow")
    parser.add_argument(
        "--git-path", default="specs", help="spec directory inside the repository (default specs)"
    )
    parser.add_argument(
        "--git-poll", type=float, default=30.0, metavar="SECONDS", help="poll --git-url this often"
    )
    parser.add_argument(
        "--leader-election",
        action="store_true",
        help="run several replicas: only the holder of a DynamoDB lease applies",
    )
    parser.add_argument("--lease-table", default=LeaseConfig.table, help="DynamoDB table")
    parser.add_argument("--lease-name", default=LeaseConfig.name, help="lease item name")
    parser.add_argument(
        "--identity", default=f"{socket.gethostname()}-{os.getpid()}", help="this replica's name"
    )
    parser.add_argument(
        "--lease-timing",
        default="15,10,2",
        metavar="DURATION,RENEW,RETRY",
        help="lease duration, renew deadline and retry period in seconds (default 15,10,2); "
        "the renew deadline must cover a mutating call attempt (5 s) and two retry periods",
    )
    parser.add_argument(
        "--demand-table",
        default="ecs-reconciler-demand",
        help="DynamoDB table of queued jobs from webhooks (created if missing)",
    )
    parser.add_argument(
        "--webhook-hook",
        metavar="PATH",
        help="the webhook GitHub sends workflow_job events through, as its API path: /app/hook "
        "(a GitHub App's; needs App credentials), /orgs/ORG/hooks/ID or /repos/OWNER/REPO/"
        "hooks/ID; the leader asks GitHub to redeliver its failed deliveries (needs "
        "GITHUB_WEBHOOK_SECRET and --runner-states github)",
    )
    parser.add_argument(
        "--redelivery-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="read the hook's delivery log this often (default 60: one request a minute)",
    )
    parser.add_argument(
        "--registration-grace",
        type=_positive_seconds("--registration-grace"),
        default=DEFAULT_GRACE_SECONDS,
        metavar="SECONDS",
        help="github runner states: a runner registration or JIT configuration that belongs "
        f"to no running task is deleted once seen that way this long (default "
        f"{DEFAULT_GRACE_SECONDS:g}; ECS listings lag, so keep it well above a few seconds)",
    )
    for flag, low, high, default, what in (
        (
            "--bind-workers",
            1,
            64,
            DEFAULT_BIND_WORKERS,
            "runner tasks bound to their JIT registration at once after ECS placed them "
            "(GitHub and SSM calls in flight); GitHub's --github-concurrency and "
            "--github-write-budget still apply",
        ),
        (
            "--coalesce-ms",
            0,
            10_000,
            ControllerSettings.coalesce_ms,
            "triggers (webhook deliveries) less than MS apart are one reconcile cycle (0: a "
            "cycle per wake-up); a lone delivery waits this long",
        ),
        (
            "--coalesce-max-ms",
            0,
            60_000,
            ControllerSettings.coalesce_max_ms,
            "a burst of triggers is gathered at most this long after its first before the "
            "cycle starts (at least --coalesce-ms)",
        ),
    ):
        parser.add_argument(
            flag,
            type=_bounded_int(flag, low, high),
            default=default,
            metavar="N" if low else "MS",
            help=f"{what} ({low}-{high}, default {default})",
        )
    parser.add_argument(
        "--workdir",
        default=".ecs-reconciler",
        help="where --git-url is cloned (default .ecs-reconciler/)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Start the HTTP listener and the loop; return on SIGTERM / Ctrl-C."""
    try:
        clients = AwsClients(region=args.region, profile=args.profile)
        host, _, port = args.listen.rpartition(":")
        git = None
        paths = spec_paths(args)
        if args.git_url:
            git = GitSource(args.git_url, args.branch, Path(args.workdir) / "repo", args.git_path)
            git.sync()
            paths = [str(git.spec_dir)]
        if args.coalesce_max_ms < args.coalesce_ms:
            raise ValueError(
                f"--coalesce-max-ms ({args.coalesce_max_ms}) must be at least --coalesce-ms "
                f"({args.coalesce_ms})"
            )
        settings = ControllerSettings(
            spec_paths=paths,
            resync_interval=args.resync,
            guard=GuardPolicy(max_stop_share=args.max_stop_share, allow_delete=args.allow_delete),
            git_poll_interval=args.git_poll,
            revision_refresh=args.revision_refresh,
            coalesce_ms=args.coalesce_ms,
            coalesce_max_ms=args.coalesce_max_ms,
            bind_workers=args.bind_workers,
            background_binding=True,
        )
        elector = _elector(args, clients) if args.leader_election else None
        source = runner_state_source(args, clients)
        secret = os.environ.get(WEBHOOK_SECRET_ENV, "")
        demand = _demand_book(args, clients) if secret else None
        redeliverer = _redeliverer(args, demand, source)
        is_leader = (lambda: elector.is_leader) if elector else (lambda: True)
        scale_sets = (
            ScaleSetPools(source.client) if isinstance(source, GitHubRunnerStates) else None
        )
        controller = Controller(
            settings,
            clients,
            source,
            provisioner=runner_provisioner(source, clients, args.jit_kms_key, scale_sets),
            is_leader=is_leader,
            git=git,
            demand=demand,
            github=source.client if isinstance(source, GitHubRunnerStates) else None,
            janitor=runner_janitor(source, clients, args.registration_grace),
            versions=runner_version_watch(args, source),
            redeliverer=redeliverer,
            fence=elector,
            audit=QueuedJobAudit(source.client, demand)
            if demand is not None and isinstance(source, GitHubRunnerStates)
            else None,
            # pools with demand.source scaleSet: a listener each, only while this replica leads
            scale_set_listeners=ScaleSetListeners(
                scale_sets, ScaleSetDemand(), args.identity, is_leader, fence=elector
            )
            if scale_sets is not None
            else None,
            # learned beside the demand (same table, made by _demand_book), from the webhooks
            arrivals=DynamoArrivalStore(clients.client("dynamodb"), args.demand_table)
            if demand is not None
            else None,
        )
        receiver = (
            WebhookReceiver.queued(
                secret.encode(), demand, controller.demand_pools, controller.on_job_event
            )
            if demand is not None
            else None
        )
        loop = threading.Thread(target=controller.run, name="controller")
        server = ControllerServer(
            host or "127.0.0.1",
            int(port),
            controller.status,
            loop.is_alive,
            controller.metrics.render,
            webhooks=receiver,
        )
    except (AwsConfigurationError, GitRevisionError, OSError, ValueError, ClientError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    server.start()
    print(f"ecs-reconciler controller: serving http://{server.address}/status", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: controller.stop())
    lease_stop = threading.Event()
    if elector is not None:
        threading.Thread(
            target=elector.run,
            args=(lease_stop,),
            kwargs={"on_started_leading": controller.became_leader},
            name="lease",
            daemon=True,
        ).start()
    loop.start()
    try:
        while loop.is_alive():
            loop.join(timeout=0.5)
    except KeyboardInterrupt:
        controller.stop()
        loop.join()
    finally:
        lease_stop.set()
        if elector is not None:
            elector.release()
        server.close()
        if receiver is not None:
            receiver.close()
    print("ecs-reconciler controller: stopped", flush=True)
    return EXIT_OK


def _positive_seconds(flag: str) -> Callable[[str], float]:
    """An argparse type: a number of seconds above 0."""

    def parse(text: str) -> float:
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
        if not seconds > 0 or seconds == float("inf"):
            raise argparse.ArgumentTypeError(f"{flag} takes seconds above 0, not {text!r}")
        return seconds

    return parse


def _bounded_int(flag: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number within [low, high]."""

    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(
                f"{flag} takes a whole number from {low} to {high}, not {text!r}"
            )
        return int(text)

    return parse


def _redeliverer(
    args: argparse.Namespace, demand: DemandBook | None, source: object
) -> Redeliverer | None:
    """With --webhook-hook: the loop that recovers failed deliveries (ValueError if it
    cannot run: it needs the demand book and GitHub credentials)."""
    if not args.webhook_hook:
        return None
    if demand is None:
        raise ValueError(f"--webhook-hook needs {WEBHOOK_SECRET_ENV} (webhooks are not received)")
    if not isinstance(source, GitHubRunnerStates):
        raise ValueError("--webhook-hook needs --runner-states github (GitHub credentials)")
    return Redeliverer(
        source.client, args.webhook_hook, demand.store, interval=args.redelivery_interval
    )


def _demand_book(args: argparse.Namespace, clients: AwsClients) -> DemandBook:
    """Queued jobs from POST /webhook, kept in DynamoDB (--demand-table).

    Durable, so demand survives a restart, and shared, so the webhooks a standby replica
    receives reach the leader, which reloads the book every cycle. Its client has short
    timeouts and few retries: the writer threads retry on their own, and a cycle that cannot
    read it uses the last demand known.
    """
    store = DynamoDemandStore(clients.client("dynamodb", config=CLIENT_CONFIG), args.demand_table)
    store.ensure_table()
    return DemandBook(store)


def _elector(args: argparse.Namespace, clients: AwsClients) -> LeaderElector:
    try:
        duration, renew, retry = (float(part) for part in args.lease_timing.split(","))
    except ValueError:
        raise ValueError(
            f"--lease-timing must be DURATION,RENEW,RETRY in seconds, got {args.lease_timing!r}"
        ) from None
    config = LeaseConfig(args.lease_table, args.lease_name, duration, renew, retry)
    # every mutating attempt needs the lease for its worst case, even after a missed renewal
    needed = clients.attempt_budget + 2 * retry
    if renew < needed:
        raise ValueError(
            f"--lease-timing: the renew deadline ({renew:g}s) must be at least a mutating call "
            f"attempt's worst case ({clients.attempt_budget:g}s) plus two retry periods "
            f"({2 * retry:g}s): {needed:g}s"
        )
    elector = LeaderElector(clients.client("dynamodb"), args.identity, config)
    elector.ensure_table()
    return elector
