"""Options and helpers shared by the verbs that talk to AWS (`plan`, `apply`, `sandbox`)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..aws.clients import AwsClients
from ..clock import utc_now
from ..github.limits import DOCUMENTED_CONCURRENCY, WriteBudget
from ..plan.actions import Plan
from ..plan.render_markdown import render_markdown
from ..plan.render_text import render_text
from ..plan.versions import DEFAULT_MAX_AGE, PublishedVersion
from ..runners import (
    NamingProvisioner,
    RunnerProvisioner,
    RunnerStateSource,
    UnknownRunnerStates,
)

if TYPE_CHECKING:
    from ..github.janitor import RunnerJanitor
    from ..github.releases import RunnerVersionWatch
    from ..github.scaleset.pools import ScaleSetPools
    from ..reconcile import Cycle

RUNNER_STATE_ENV = "ECS_RECONCILER_RUNNER_STATES"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
JIT_KMS_KEY_ENV = "ECS_RECONCILER_JIT_KMS_KEY"
EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
DEFAULT_WRITE_BUDGET = "80/500"


def add_aws_options(parser: argparse.ArgumentParser) -> None:
    """--specs, --region, --profile, --runner-states, --boot-timeout, --now, runner versions."""
    parser.add_argument(
        "--specs", action="append", metavar="PATH", help="spec file or directory (default specs/)"
    )
    parser.add_argument("--region", help="AWS region (default: from the AWS configuration)")
    parser.add_argument("--profile", help="AWS profile (default: from the AWS configuration)")
    parser.add_argument(
        "--runner-states",
        choices=("none", "task-tags", "github"),
        default=os.environ.get(RUNNER_STATE_ENV, "none"),
        help="where busy/idle runner states come from: none (every runner unknown, so none is "
        "ever stopped), task-tags (the sandbox's simulated runners; refused unless AWS is the "
        "sandbox on 127.0.0.1) or github (the runner API "
        "at GITHUB_API_URL with GITHUB_TOKEN or a GitHub App; runners are started as JIT "
        f"runners); env {RUNNER_STATE_ENV}",
    )
    parser.add_argument(
        "--boot-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="github runner states: a task whose runner is not online this long after it "
        "started is failed, stopped and replaced (default 600)",
    )
    parser.add_argument(
        "--jit-kms-key",
        default=os.environ.get(JIT_KMS_KEY_ENV) or None,
        metavar="KEY",
        help="github runner states: the KMS key (id, ARN or alias/NAME) that encrypts the JIT "
        "configuration parameters (default: the account's aws/ssm key, which every principal "
        f"in the account may decrypt); env {JIT_KMS_KEY_ENV}",
    )
    parser.add_argument(
        "--github-write-budget",
        type=_write_budget,
        default=_write_budget(DEFAULT_WRITE_BUDGET),
        metavar="PER_MINUTE[/PER_HOUR]|off",
        help="github runner states: GitHub's secondary limit on content-creating requests, "
        "kept on our side: at most this many POSTs (JIT configurations) a sliding minute and "
        f"hour (default {DEFAULT_WRITE_BUDGET}, as GitHub documents it in general; raise it "
        "where GitHub allows more, or off)",
    )
    parser.add_argument(
        "--github-concurrency",
        type=_positive_int,
        default=DOCUMENTED_CONCURRENCY,
        metavar="N",
        help="github runner states: GitHub requests in flight at once, every thread counted "
        f"(default {DOCUMENTED_CONCURRENCY}, GitHub's documented secondary limit)",
    )
    parser.add_argument(
        "--now",
        type=_timestamp,
        help="plan as if it were this time (ISO 8601, for idle schedules); default: now",
    )
    parser.add_argument(
        "--runner-latest",
        action="append",
        type=_published_version,
        default=[],
        metavar="VERSION@DATE",
        help="a runner release and its publish date, e.g. 2.330.0@2026-01-05 (repeatable). "
        "Pool runner versions are compared with these and, with --runner-states github, with "
        "the releases of actions/runner on GitHub; with neither, versions are not checked",
    )
    parser.add_argument(
        "--runner-version-max-age",
        type=_days,
        default=DEFAULT_MAX_AGE,
        metavar="DAYS",
        help="warn (RunnerVersionStale) when a release newer than a pool's runner version was "
        f"published more than DAYS ago (default {DEFAULT_MAX_AGE.days}; GitHub stops giving "
        "jobs to it 30 days after)",
    )


def _write_budget(text: str) -> WriteBudget | None:
    try:
        return WriteBudget.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return int(text)


def _timestamp(text: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _published_version(text: str) -> PublishedVersion:
    try:
        return PublishedVersion.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def planning_time(args: argparse.Namespace) -> datetime.datetime:
    """The time a one-shot plan or apply decides at: --now, or the system clock."""
    now: datetime.datetime = args.now or utc_now()
    return now


def _days(text: str) -> datetime.timedelta:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a whole number of days, not {text!r}")
    return datetime.timedelta(days=int(text))


def spec_paths(args: argparse.Namespace) -> list[str]:
    """The spec paths given, or specs/."""
    return list(args.specs or ["specs"])


class SandboxOnly(ValueError):
    """A sandbox-only option was used against AWS."""


def runner_state_source(args: argparse.Namespace, clients: AwsClients) -> RunnerStateSource:
    """The runner-state source chosen on the command line.

    `task-tags` is refused unless the AWS endpoint is the sandbox's (a loopback address):
    anyone allowed `ecs:TagResource` could mark a runner idle and have it stopped."""
    if args.runner_states == "task-tags":
        from ..sandbox.runners import TaskTagRunnerStates

        endpoint = clients.ecs.meta.endpoint_url
        if urllib.parse.urlsplit(endpoint).hostname not in LOOPBACK_HOSTS:
            raise SandboxOnly(
                "--runner-states task-tags is for the sandbox only: it believes the "
                "sandbox:runner tag of each task, which anyone allowed ecs:TagResource can set, "
                f"so it is refused against {endpoint}; use --runner-states github (or none)"
            )

        return TaskTagRunnerStates(clients)
    if args.runner_states == "github":
        from ..github import GitHubClient, auth_from_environment
        from ..github.limits import SecondaryLimits
        from ..github.registry import GitHubRunnerStates

        limits = SecondaryLimits(args.github_concurrency, args.github_write_budget)
        return GitHubRunnerStates(
            GitHubClient(auth=auth_from_environment(), limits=limits),
            boot_timeout=args.boot_timeout,
        )
    return UnknownRunnerStates()


def runner_version_watch(
    args: argparse.Namespace, source: RunnerStateSource
) -> RunnerVersionWatch | None:
    """Releases to check runner versions against: --runner-latest, and GitHub's when used."""
    from ..github.registry import GitHubRunnerStates
    from ..github.releases import RunnerVersionWatch

    client = source.client if isinstance(source, GitHubRunnerStates) else None
    if client is None and not args.runner_latest:
        return None
    return RunnerVersionWatch(args.runner_latest, client, args.runner_version_max_age)


def live_cycle(args: argparse.Namespace, clients: AwsClients, source: RunnerStateSource) -> Cycle:
    """One read-only cycle on the specs for `plan` and `apply`: runner versions checked, and
    runner group access compared with GitHub's when GitHub is read."""
    from ..aws.observe import Observer
    from ..github.groups import RunnerGroupAccessWatch
    from ..github.registry import GitHubRunnerStates
    from ..reconcile import plan_cycle

    return plan_cycle(
        spec_paths(args),
        Observer(clients),
        source,
        planning_time(args),
        versions=runner_version_watch(args, source),
        group_access=RunnerGroupAccessWatch(source.client)
        if isinstance(source, GitHubRunnerStates)
        else None,
    )


def runner_provisioner(
    source: RunnerStateSource,
    clients: AwsClients,
    kms_key: str | None = None,
    scale_sets: ScaleSetPools | None = None,
) -> RunnerProvisioner:
    """JIT registrations through SSM with GitHub as the source (encrypted with `kms_key`,
    --jit-kms-key; scale-set pools' runners from their scale set); otherwise names only."""
    from ..github.jit import JitProvisioner
    from ..github.registry import GitHubRunnerStates

    if isinstance(source, GitHubRunnerStates):
        return JitProvisioner(
            source.client, clients.client("ssm"), kms_key=kms_key, scale_sets=scale_sets
        )
    return NamingProvisioner()


def runner_janitor(
    source: RunnerStateSource, clients: AwsClients, grace: float
) -> RunnerJanitor | None:
    """Garbage collection of runner registrations and JIT parameters (GitHub source only),
    once one has belonged to no running task for `grace` seconds."""
    from ..github.janitor import RunnerJanitor
    from ..github.registry import GitHubRunnerStates

    if isinstance(source, GitHubRunnerStates):
        return RunnerJanitor(source, clients.client("ssm"), grace=grace)
    return None


def render(plan: Plan, output_format: str, policy: dict[str, Any] | None = None) -> str:
    """The plan in text, markdown or json, with the policy verdict when one was checked."""
    if output_format == "json":
        data = plan.to_json()
        if policy is not None:
            data["policy"] = policy
        return json.dumps(data, indent=2) + "\n"
    if output_format == "markdown":
        return render_markdown(plan, policy=policy)
    text = render_text(plan)
    if policy is not None:
        text += "\n" + "\n".join(policy_lines(policy)) + "\n"
    return text


def policy_lines(policy: dict[str, Any]) -> list[str]:
    """`Policy renovate-safe: passed` or the failure with one line per violation."""
    if policy["passed"]:
        return [f"Policy {policy['name']}: passed."]
    return [f"Policy {policy['name']}: FAILED", *(f"  x {v}" for v in policy["violations"])]


def write_output(text: str, out: str | None) -> None:
    """Write to --out FILE (atomically) or stdout."""
    if not out:
        sys.stdout.write(text)
        return
    target = Path(out)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(target)


def exit_code(plan: Plan) -> int:
    """0 no changes, 2 changes, 1 when specs or observation had errors."""
    if plan.spec_errors or any(note.severity == "error" for note in plan.notes):
        return EXIT_ERROR
    return EXIT_CHANGES if plan.has_changes else EXIT_OK
