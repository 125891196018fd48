"""The chaos soak (issue 14): two controller replicas on the sandbox under a job load while
faults are injected, with the invariants that must hold whatever fails.

`Soak(settings).run()` builds:

- the sandbox (moto's HTTP server, the simulated ECS agent) with the simulated GitHub, and a
  spec set of the platform pool alone (max `max_runners`, `idle`, small tasks, instances of
  its own reconciler-scaled group);
- a job load from the trace generator (`simulate.trace`, seeded by the soak's seed): the
  platform repositories' jobs from Monday 09:00 Tokyo on, as many as the soak's length
  asks, their arrivals and durations compressed into the chaos phase; `GitHubWorld` queues
  them, plays the runners and sends every `workflow_job` delivery through an organization
  hook to `WebhookBalancer`, which forwards it to a replica that is up;
- two `ecs-reconciler run` processes with leader election, each reaching AWS and GitHub
  through its own port of the fault proxies (`chaos.ChaosAws`, `chaos.ChaosGitHub`), and
  redelivering failed deliveries through the hook's deliveries API (`--webhook-hook`);
- faults: per request (throttling, 5xx, latency, resets, GitHub's secondary rate limit, a
  RunTask answered 500 after it did the work; see `chaos`), and process faults at seeded
  times (`fault_schedule`): SIGSTOP of the leader past its lease then SIGCONT, SIGKILL of the
  leader and a restart (a new identity, as a new pod), DynamoDB unavailable to the leader,
  and a spec edit while the leader is applying (its proxy saw a mutating call).

After the chaos phase the faults stop, stopped replicas resume, and the soak waits (bounded)
for the system to settle. Invariants, checked all along and at the end:

1. no busy runner stopped (no job lost its runner);
2. every job served by the end;
3. runner tasks never above `max` plus the rollout's surge (sampled every tick);
4. no mutating AWS or GitHub call by a replica outside its lease (`chaos.outside_lease`);
5-8. after quiesce no leaked tasks, registrations, SSM parameters (JIT configurations) or
   instances;
9. the final plan (`ecs-reconciler plan`, straight at moto and GitHub) is empty.

Everything listens on and talks to 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..aws.observe import tag_dict
from ..github.jit import PARAMETER_PREFIX
from ..plan.state import POOL_TAG, RUNNER_NAME_TAG
from ..runners import runner_name
from ..simulate.trace import (
    DEFAULT_START,
    DIND,
    TraceJob,
    generate_trace,
    read_trace,
    write_trace,
)
from ..spec.loader import load_specs
from .chaos import CallLedger, ChaosAws, ChaosGitHub, Injector, WebhookBalancer
from .runners import running_runner_tasks
from .scenario import (
    PLATFORM_POOL_FILE,
    SANDBOX_GITHUB_TOKEN,
    WITHOUT_SIDECAR,
    Sandbox,
    platform_pool_alone,
    run_command,
)
from .server import MotoServer
from .world import GitHubWorld

CLUSTER = "ci-runners"
GROUP = "ci-runners-linux-x64"
POOL = "platform-linux-dind"
POOL_FILE = PLATFORM_POOL_FILE
SCOPE = "/orgs/platform"
LEASE_TABLE = "ecs-reconciler-leases"
SECRET = "soak-webhook-secret"
#: how long a runner waits for its JIT configuration (the image's RUNNER_JIT_WAIT_SECONDS,
#: 120 by default): a task whose binding a lost lease or a SIGKILL cut short exits after it
JIT_WAIT = 30.0
#: a replica whose proxy saw a fenced mutating call this recently is applying
APPLYING = 2.0
PROCESS_FAULTS = (
    "leader: SIGSTOP past its lease, then SIGCONT",
    "leader: SIGKILL, then a new replica",
    "dynamodb: unavailable to the leader",
    "spec edit while the leader applies",
)


@dataclass(frozen=True)
class SoakSettings:
    """What one soak does; `minutes` is the chaos phase (the settle phase comes after)."""

    minutes: float
    seed: int
    lease: tuple[float, float, float] = (15.0, 10.0, 2.0)  # duration, renew deadline, retry
    resync: float = 5.0
    settle_timeout: float = 300.0  # seconds after the chaos phase for everything to settle
    max_runners: int = 6
    idle: int = 2
    jobs_per_minute: float = 10.0
    tick: float = 0.5
    faults: bool = True  # False: the same soak with no fault at all (a baseline)
    registration_grace: float = 120.0  # the replicas' janitor (run --registration-grace)

    def __post_init__(self) -> None:
        if not 0.25 <= self.minutes <= 24 * 60:
            raise ValueError(f"minutes must be between 0.25 and 1440, got {self.minutes:g}")
        duration, renew, retry = self.lease
        if not 0 < retry < renew < duration:
            raise ValueError(f"lease timing must be retry < renew < duration: {self.lease}")
        if self.max_runners < self.idle + 1 or self.idle < 1:
            raise ValueError("the pool needs idle >= 1 and max > idle")
        if min(self.settle_timeout, self.tick, self.jobs_per_minute, self.registration_grace) <= 0:
            raise ValueError(
                "settle_timeout, tick, jobs_per_minute and registration_grace must be positive"
            )

    @property
    def chaos_seconds(self) -> float:
        return self.minutes * 60.0


@dataclass(frozen=True)
class LoadJob:
    """One job of the soak's load: when to queue it (seconds into the chaos phase)."""

    at: float
    repository: str
    labels: tuple[str, ...]
    duration: float


def job_load(seed: int, count: int, span: float, max_duration: float) -> list[LoadJob]:
    """`count` jobs of the generated trace (seed `seed`) for the platform pool, from Monday
    09:00 Tokyo on, compressed so that they arrive within `span` seconds; durations are
    compressed by the same factor, within [2 s, `max_duration`]."""
    if count < 1 or span <= 0 or max_duration < 2:
        raise ValueError("count >= 1, span > 0 and max_duration >= 2 are needed")
    ours = _platform_jobs(seed)[:count]
    if len(ours) < count:
        raise ValueError(f"the trace has {len(ours)} platform jobs after 09:00, {count} asked")
    first, last = ours[0].arrival, ours[-1].arrival
    factor = span / max(last - first, 1.0)
    return [
        LoadJob(
            (job.arrival - first) * factor,
            job.event.repository,
            job.event.labels,
            min(max_duration, max(2.0, job.run_time * factor)),
        )
        for job in ours
    ]


@functools.lru_cache(maxsize=4)
def _platform_jobs(seed: int) -> tuple[TraceJob, ...]:
    """The platform pool's jobs of a generated day (`trace generate --days 1 --seed SEED`)
    from 09:00 Tokyo on, by arrival."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            write_trace(generate_trace(1, seed, DEFAULT_START), out)
        jobs = read_trace(path)
    opening = (DEFAULT_START + datetime.timedelta(hours=9)).timestamp()
    return tuple(j for j in jobs if j.event.labels == DIND and j.arrival >= opening)


def fault_schedule(seed: int, chaos_seconds: float) -> list[tuple[float, str]]:
    """When each process fault is due: rounds of about a minute, each with every kind once in
    a seeded order at a seeded moment of its quarter; the first not before 3 s."""
    rng = random.Random(f"{seed}:process-faults")
    rounds = max(1, round(chaos_seconds / 60.0))
    length = chaos_seconds / rounds
    schedule = []
    for index in range(rounds):
        kinds = list(PROCESS_FAULTS)
        rng.shuffle(kinds)
        slot = length / len(kinds)
        for position, kind in enumerate(kinds):
            at = index * length + (position + rng.uniform(0.1, 0.9)) * slot
            schedule.append((max(3.0, at), kind))
    return sorted(schedule)


def soak_specs(directory: Path, max_runners: int, idle: int) -> Path:
    """The example capacity providers and the platform pool alone: tasks of 1024 CPU and
    2048 MiB without a Docker sidecar (three to a moto instance, so the group scales), no
    SLO (the floors are the targets), `max_runners` and `idle`."""
    target = platform_pool_alone(
        directory,
        (
            ("cpu: 2048", "cpu: 1024"),
            ("memory: 4096", "memory: 2048"),
            ("max: 40", f"max: {max_runners}"),
            ("    idle: 2\n", f"    idle: {idle}\n"),
            WITHOUT_SIDECAR,
        ),
    )
    pool = target / POOL_FILE
    pool.write_text(re.sub(r"    slo:[^\n]*\n(      [^\n]*\n)*", "", pool.read_text()))
    load_specs([target])  # raises if the edits broke it
    return target


@dataclass
class Invariant:
    name: str
    held: bool = True
    detail: str = ""

    def fail(self, detail: str) -> None:
        if self.held:
            self.held, self.detail = False, detail


@dataclass
class Replica:
    """One `run` process slot (a, b); a restart is a new process with a new identity."""

    slot: str
    generation: int = 0
    process: subprocess.Popen[str] | None = None
    url: str = ""
    stopped: bool = False
    restarting: bool = False  # a start is scheduled
    log: IO[str] | None = None

    @property
    def identity(self) -> str:
        return f"replica-{self.slot}{self.generation}"

    @property
    def up(self) -> bool:
        """Running, not stopped, serving."""
        alive = self.process is not None and self.process.poll() is None
        return alive and not self.stopped and bool(self.url)


@dataclass
class SoakReport:
    faults: Counter[str]
    invariants: list[Invariant]
    jobs: int
    mutations: Counter[str] = field(default_factory=Counter)
    kept: Path | None = None  # the soak's directory, kept when an invariant failed

    @property
    def held(self) -> int:
        return sum(1 for i in self.invariants if i.held)

    @property
    def ok(self) -> bool:
        return self.held == len(self.invariants)

    def render(self) -> str:
        lines = ["fault injected                                    | count"]
        lines += [f"{kind:<50}| {count}" for kind, count in sorted(self.faults.items())]
        lines.append("")
        lines.append("invariant                                         | held")
        for invariant in self.invariants:
            verdict = "yes" if invariant.held else f"NO: {invariant.detail}"
            lines.append(f"{invariant.name:<50}| {verdict}")
        lines.append("")
        lines.append(
            f"{self.jobs} jobs; fenced mutating calls by replica: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.mutations.items()))
        )
        if self.kept is not None:
            lines.append(f"specs and replica logs kept in {self.kept}")
        total = sum(self.faults.values())
        lines.append(
            f"soak: {self.held}/{len(self.invariants)} invariants held, {total} faults injected"
        )
        return "\n".join(lines)


class Soak:
    """One soak run; `run()` returns its report."""

    def __init__(
        self,
        settings: SoakSettings,
        server: MotoServer | None = None,
        progress: Callable[[str], None] = lambda message: None,
        keep: Path | None = None,
    ) -> None:
        """`server`: a running moto server to use (reset first); `keep`: a directory for
        the specs and the replicas' logs, kept (default: a temporary one, kept only if an
        invariant failed)."""
        self.settings = settings
        self.keep = keep
        self.server = server
        self.progress = progress
        self.injector = Injector(settings.seed)
        self.ledger = CallLedger(LEASE_TABLE)
        self.invariants = {
            key: Invariant(name)
            for key, name in (
                ("busy", "no busy runner stopped"),
                ("served", "every job served by the end"),
                ("max", f"runners never above max {settings.max_runners} + surge"),
                ("lease", "no mutating call outside the replica's lease"),
                ("tasks", "no leaked tasks after quiesce"),
                ("registrations", "no leaked runner registrations after quiesce"),
                ("parameters", "no leaked SSM parameters after quiesce"),
                ("instances", "no leaked instances after quiesce"),
                ("plan", "final plan empty"),
            )
        }
        self.replicas = [Replica("a"), Replica("b")]
        self._pending: list[tuple[float, Callable[[], None]]] = []
        self._peak = 0
        self._edits = 0

    # ------------------------------------------------------------------ the run

    def run(self) -> SoakReport:
        """The whole soak; its directory (specs, the replicas' logs) is removed when every
        invariant held, else kept and named in the report."""
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=False)
        self.workdir = self.keep or Path(tempfile.mkdtemp(prefix="soak-"))
        report = self._run()
        if report.ok and self.keep is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            report.kept = self.workdir
        return report

    def _run(self) -> SoakReport:
        settings = self.settings
        self.specs = soak_specs(self.workdir, settings.max_runners, settings.idle)
        spec = load_specs([self.specs]).pools[0].spec
        self.bound = settings.max_runners + spec.rollout.surge_for(settings.max_runners)
        count = max(6, round(settings.jobs_per_minute * settings.minutes))
        load = job_load(
            settings.seed,
            count,
            span=0.8 * settings.chaos_seconds,
            max_duration=max(3.0, min(30.0, 0.15 * settings.chaos_seconds)),
        )
        with contextlib.ExitStack() as stack:
            sandbox = stack.enter_context(Sandbox([self.specs], github=True, server=self.server))
            self.sandbox = sandbox
            self.ecs = sandbox.clients(read_only=True).ecs
            assert sandbox.github is not None
            self.aws = stack.enter_context(
                ChaosAws(sandbox.endpoint_url, self.ledger, self.injector)
            )
            self.github = stack.enter_context(
                ChaosGitHub(sandbox.github.url, self.ledger, self.injector)
            )
            self.aws.lag = 1.0  # ECS lists a started task a second later
            self.balancer = stack.enter_context(WebhookBalancer())
            self.world = GitHubWorld(
                sandbox.github,
                sandbox.clients(),
                [CLUSTER],
                f"{self.balancer.url}/webhook",
                SECRET.encode(),
                hook_owner=SCOPE,
                jit_wait=JIT_WAIT,
            )
            stack.callback(self._stop_replicas)
            for replica in self.replicas:
                self.aws.listen(replica.slot)
                self.github.listen(replica.slot)
                self._spawn(replica)
            deadline = time.monotonic() + 120.0
            while not all(r.url for r in self.replicas):
                if time.monotonic() > deadline or any(
                    r.process is not None and r.process.poll() is not None for r in self.replicas
                ):
                    raise RuntimeError(f"the replicas did not start: see {self.workdir}")
                time.sleep(0.1)
            self._chaos(load)
            self._settle()
        return SoakReport(
            self.injector.faults,
            list(self.invariants.values()),
            len(load),
            self.ledger.mutations(),
        )

    def _chaos(self, load: list[LoadJob]) -> None:
        settings = self.settings
        schedule = fault_schedule(settings.seed, settings.chaos_seconds) if settings.faults else []
        self.injector.enabled = settings.faults
        began = time.monotonic()
        queued = 0
        self.progress(f"chaos: {len(load)} jobs, {len(schedule)} process faults")
        while (now := time.monotonic() - began) < settings.chaos_seconds:
            while queued < len(load) and load[queued].at <= now:
                job = load[queued]
                self.world.queue_jobs(job.repository, job.labels, duration=job.duration)
                queued += 1
            while schedule and schedule[0][0] <= now:
                if not self._inject(schedule[0][1], began + schedule[0][0]):
                    break  # not possible yet (no leader known): try again next tick
                schedule.pop(0)
            self._step()
        for job in load[queued:]:
            self.world.queue_jobs(job.repository, job.labels, duration=job.duration)
        for _, kind in schedule:  # the chaos phase is over
            if kind.startswith("spec edit"):
                self._edit_specs(f"{kind} (none seen)")
            else:
                self.injector.count(f"skipped (no leader in time): {kind}")

    def _settle(self) -> None:
        """Faults off, every replica up; wait until settled or the time is up."""
        self.injector.enabled = False
        self.injector.outages.clear()
        for _due, action in sorted(self._pending, key=lambda pending: pending[0]):
            action()
        self._pending.clear()
        began = time.monotonic()
        deadline = began + self.settings.settle_timeout
        self.progress("settling")
        next_check, next_report = 0.0, began + 30.0
        waiting = self._unsettled()
        while waiting and time.monotonic() < deadline:
            self._step()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 5.0
                waiting = self._unsettled()
                if not waiting:
                    self.progress(f"settled in {time.monotonic() - began:.0f}s")
                elif time.monotonic() >= next_report:
                    next_report = time.monotonic() + 30.0
                    self.progress("waiting for: " + "; ".join(d for _, d in waiting))
        self._check_lease(before=None)
        # judged on the state that settled: checking once more would judge what the
        # controllers do next (a runner started a moment later is booting, not leaked)
        for key, detail in waiting:
            self.invariants[key].fail(detail)

    def _step(self) -> None:
        """One tick: due resumes and restarts, the world, the continuous invariants."""
        started = time.monotonic()
        for pending in [p for p in self._pending if p[0] <= started]:
            self._pending.remove(pending)
            pending[1]()
        self._restart_exited()
        self.balancer.upstreams = [r.url for r in self.replicas if r.up]
        try:
            self.world.tick()
            tasks = running_runner_tasks(self.ecs, CLUSTER)
        except Exception as error:  # the world reads moto directly: retried next tick
            self.progress(f"world tick failed: {error}")
            tasks = []
        ours = sum(1 for t in tasks if tag_dict(t.get("tags")).get(POOL_TAG) == POOL)
        self._peak = max(self._peak, ours)
        if ours > self.bound:
            self.invariants["max"].fail(f"{ours} runner tasks > {self.bound}")
        if self.world.interrupted:
            job = self.world.interrupted[0]
            self.invariants["busy"].fail(f"job {job.job_id} lost its runner {job.runner}")
        self._check_lease(before=started - 10.0)
        time.sleep(max(0.0, self.settings.tick - (time.monotonic() - started)))

    def _check_lease(self, before: float | None) -> None:
        duration = self.settings.lease[0]
        bad = self.ledger.violations(duration, before=before)
        if bad:
            call = bad[0]
            self.invariants["lease"].fail(
                f"{len(bad)} call(s), first {call.identity} {call.service}:{call.operation}"
            )

    # ------------------------------------------------------------------ process faults

    def _inject(self, kind: str, due: float) -> bool:
        """Inject one process fault; False when it has to wait (no leader known yet)."""
        leader = self._leader()
        if kind.startswith("spec edit"):
            applying = leader is not None and (
                time.monotonic() - self.ledger.last_mutation.get(leader.slot, -APPLYING) < APPLYING
            )
            if applying:
                return self._edit_specs(kind)
            return time.monotonic() > due + 30.0 and self._edit_specs(f"{kind} (none seen)")
        if leader is None:
            if time.monotonic() > due + 30.0:
                self.injector.count(f"skipped (no leader in time): {kind}")
                return True
            return False
        self.progress(f"{kind}: {leader.identity}")
        self.injector.count(kind)
        duration = self.settings.lease[0]
        assert leader.process is not None
        if kind.startswith("leader: SIGSTOP"):
            leader.process.send_signal(signal.SIGSTOP)
            leader.stopped = True
            self._later(duration + 3.0, lambda: self._resume(leader))
        elif kind.startswith("leader: SIGKILL"):
            leader.process.kill()
            leader.process.wait()
            leader.restarting = True
            self._later(1.0, lambda: self._start(leader))
        else:
            self.injector.outages[leader.slot] = time.monotonic() + min(
                60.0, max(duration + 3.0, self.settings.chaos_seconds / 5)
            )
        return True

    def _edit_specs(self, kind: str) -> bool:
        """Change the pool while an apply runs: its idle target, or its environment (a new
        task-definition revision: a rollout). Written atomically, as a checkout does."""
        self._edits += 1
        path = self.specs / POOL_FILE
        text = path.read_text()
        if self.injector.choice(("idle", "environment")) == "idle":
            idle = self.settings.idle + (self._edits % 2)
            text = re.sub(r"\n    idle: \d+\n", f"\n    idle: {idle}\n", text)
        else:
            text = text.replace(
                "    RUNNER_WORKDIR: /runner/_work\n",
                f"    RUNNER_WORKDIR: /runner/_work\n    SOAK_EDIT: '{self._edits}'\n",
            )
            text = re.sub(r"\n    SOAK_EDIT: '\d+'\n(?=    SOAK_EDIT)", "\n", text)
        staged = path.with_suffix(".tmp")
        staged.write_text(text)
        staged.replace(path)
        load_specs([self.specs])
        self.injector.count(kind)
        self.progress(kind)
        return True

    def _leader(self) -> Replica | None:
        for replica in self.replicas:
            if replica.up and _status(replica.url).get("leader"):
                return replica
        return None

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        self._pending.append((time.monotonic() + delay, action))

    def _resume(self, replica: Replica) -> None:
        if replica.process is not None and replica.stopped:
            replica.process.send_signal(signal.SIGCONT)
        replica.stopped = False

    def _start(self, replica: Replica) -> None:
        """A new process in the slot, unless one runs (as ECS restarts a service's task)."""
        replica.restarting = False
        if replica.process is None or replica.process.poll() is not None:
            self._spawn(replica)

    def _restart_exited(self) -> None:
        """A replica that exited by itself (say it found DynamoDB unavailable at start and
        gave up) is started again 2 s later, as ECS's service scheduler would."""
        for replica in self.replicas:
            process = replica.process
            if process is not None and process.poll() is not None and not replica.restarting:
                self.progress(f"{replica.identity} exited ({process.returncode}): restarting")
                replica.restarting = True
                self._later(2.0, lambda replica=replica: self._start(replica))  # type: ignore[misc]

    def _spawn(self, replica: Replica) -> None:
        """Start a new process (a new identity) in `replica`'s slot."""
        if replica.log is not None:
            replica.log.close()
        replica.generation += 1
        self.ledger.identities[replica.slot] = replica.identity
        replica.log = open(self.workdir / f"{replica.identity}.log", "w", encoding="utf-8")  # noqa: SIM115
        duration, renew, retry = self.settings.lease
        environment = {
            **os.environ,
            **self.sandbox.environment(),
            "AWS_ENDPOINT_URL": self.aws.url_of(replica.slot),
            "GITHUB_API_URL": self.github.url_of(replica.slot),
            "GITHUB_TOKEN": SANDBOX_GITHUB_TOKEN,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "ECS_RECONCILER_RUNNER_STATES": "github",
        }
        replica.process = subprocess.Popen(
            run_command(
                self.specs,
                self.settings.resync,
                "--webhook-hook",
                str(self.world.hook),
                "--redelivery-interval",
                "5",
                "--registration-grace",
                f"{self.settings.registration_grace:g}",
                identity=replica.identity,
                lease_timing=f"{duration:g},{renew:g},{retry:g}",
                verbose=True,
            ),
            env=environment,
            stdout=subprocess.PIPE,
            stderr=replica.log,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=self.workdir,  # not the repository: `-m` puts the working directory first
        )
        replica.url, replica.stopped = "", False
        threading.Thread(
            target=self._read_banner, args=(replica, replica.process), daemon=True
        ).start()

    def _read_banner(self, replica: Replica, process: subprocess.Popen[str]) -> None:
        """In a thread: the process's first line says where it serves; then it is up."""
        assert process.stdout is not None
        banner = process.stdout.readline()
        if "serving " in banner and replica.process is process:
            replica.url = banner.split("serving ", 1)[1].strip().removesuffix("/status")
            self.progress(f"started {replica.identity} at {replica.url}")
        for _ in process.stdout:  # keep reading: a full pipe would block the process
            pass

    def _stop_replicas(self) -> None:
        for replica in self.replicas:
            process = replica.process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)
                    process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if replica.log is not None:
                replica.log.close()

    # ------------------------------------------------------------------ the end

    def _unsettled(self) -> list[tuple[str, str]]:
        """The end-state invariants that do not hold (yet): (invariant, what is wrong)."""
        checks: list[tuple[str, str]] = []
        unserved = [j for j in self.world.jobs.values() if j.completed_at is None]
        if unserved:
            first = unserved[0]
            state = f"on {first.runner}" if first.started_at else "queued"
            checks.append(
                ("served", f"{len(unserved)} job(s) not served, first {first.job_id} {state}")
            )
        checks += self._leaks()
        if not checks:
            plan = self._final_plan()
            if plan:
                checks.append(("plan", plan))
        return checks

    def _leaks(self) -> list[tuple[str, str]]:
        found = []
        tasks = running_runner_tasks(self.ecs, CLUSTER)
        registered = {r["name"]: r for r in self.world.github.runners(SCOPE)}
        # a task's runner is named after it (`runners.runner_name`), tagged or not: a binding
        # cut short before the tag (a lost lease, a SIGKILL) still has a working runner
        names = {t["taskArn"]: runner_name(POOL, t["taskArn"]) for t in tasks}
        orphans = [
            _describe(t, self.world)
            for t in tasks
            if registered.get(names[t["taskArn"]], {}).get("status") != "online"
        ]
        stale = sorted(name for name in registered if name not in names.values())
        if orphans:
            found.append(("tasks", f"{len(orphans)} task(s) with no online runner: {orphans[:3]}"))
        if stale:
            found.append(("registrations", f"{len(stale)} without a task: {stale[:3]}"))
        ssm = self.sandbox.clients(read_only=True).client("ssm")
        parameters = [
            p["Name"]
            for page in ssm.get_paginator("get_parameters_by_path").paginate(
                Path=PARAMETER_PREFIX, Recursive=True
            )
            for p in page["Parameters"]
        ]
        if parameters:
            found.append(("parameters", f"{len(parameters)} left: {parameters[:3]}"))
        problem = self._instance_leaks()
        if problem:
            found.append(("instances", problem))
        return found

    def _instance_leaks(self) -> str:
        clients = self.sandbox.clients(read_only=True)
        running = {
            i["InstanceId"]
            for page in clients.ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
            )
            for reservation in page["Reservations"]
            for i in reservation["Instances"]
        }
        groups = clients.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
        members = {i["InstanceId"] for g in groups for i in g["Instances"]}
        wrong_size = [
            g["AutoScalingGroupName"] for g in groups if len(g["Instances"]) != g["DesiredCapacity"]
        ]
        arns = clients.ecs.list_container_instances(cluster=CLUSTER, status="ACTIVE")[
            "containerInstanceArns"
        ]
        registered = (
            {
                c["ec2InstanceId"]
                for c in clients.ecs.describe_container_instances(
                    cluster=CLUSTER, containerInstances=arns
                )["containerInstances"]
            }
            if arns
            else set()
        )
        problems = []
        if running - members:
            problems.append(f"outside every group: {sorted(running - members)[:3]}")
        ours = {
            i["InstanceId"]
            for g in groups
            if g["AutoScalingGroupName"] == GROUP
            for i in g["Instances"]
        }
        if ours - registered:
            problems.append(f"not registered with ECS: {sorted(ours - registered)[:3]}")
        if registered - running:
            problems.append(f"registered but gone: {sorted(registered - running)[:3]}")
        if wrong_size:
            problems.append(f"instances != desired capacity: {wrong_size}")
        return "; ".join(problems)

    def _final_plan(self) -> str:
        """'' when `plan` (straight at moto and GitHub) has no changes, else why not."""
        completed = subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", "plan", "--specs", str(self.specs)],
            env={
                **os.environ,
                **self.sandbox.environment(),
                "GITHUB_WEBHOOK_SECRET": SECRET,
            },
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
        )
        if completed.returncode == 0:
            return ""
        lines = (completed.stdout + completed.stderr).strip().splitlines()
        summary = next((line for line in reversed(lines) if line.strip()), "")
        return f"exit {completed.returncode}: {summary[:200]}"


def _describe(task: dict[str, Any], world: GitHubWorld) -> str:
    """A task, for the report: id, status, its runner name, and what the world made of it."""
    arn = task["taskArn"]
    seen = "booted" if arn in world._runners else "done" if arn in world._done else "waiting"
    name = tag_dict(task.get("tags")).get(RUNNER_NAME_TAG, "no runner-name tag")
    return f"{arn.rsplit('/', 1)[-1][:8]} {task.get('lastStatus')} {name[-12:]} ({seen})"


def _status(url: str) -> dict[str, Any]:
    """The controller part of a replica's /status ({} when it does not answer in 1 s)."""
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=1.0) as response:
            controller: dict[str, Any] = json.load(response).get("controller", {})
            return controller
    except (OSError, ValueError):
        return {}
