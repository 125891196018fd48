"""The controller loop against the sandbox: reacts to spec edits fast, never applies a
half-written spec, fixes drift on resync with no event, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from reconciler.aws.executor import Executor
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.plan.guard import GuardPolicy
from reconciler.reconcile import plan_cycle
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox, run_command

from .conftest import edit, wait_for

pytestmark = pytest.mark.e2e  # starts servers or processes

REPO = Path(__file__).resolve().parent.parent
CLUSTER = "ci-runners"
PLATFORM = "platform-linux-dind"


def running_tasks(sandbox: Sandbox, pool: str) -> list[str]:
    ecs = sandbox.clients(read_only=True).ecs
    arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return []
    tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=arns, include=["TAGS"])["tasks"]
    return sorted(
        t["taskArn"]
        for t in tasks
        if t["desiredStatus"] == "RUNNING"
        and {"key": "ecs-reconciler:pool", "value": pool} in t.get("tags", [])
    )


def start_controller(
    sandbox: Sandbox, specs: Path, resync: float
) -> tuple[Controller, threading.Thread]:
    clients = sandbox.clients()
    settings = ControllerSettings(
        spec_paths=[specs],
        resync_interval=resync,
        debounce_ms=300,
        guard=GuardPolicy(1.0),
        capacity_requeue=0.5,
    )
    controller = Controller(settings, clients, TaskTagRunnerStates(clients))
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    wait_for(lambda: controller.cycles >= 1 and controller.status.ready, 30)
    return controller, thread


def test_spec_edit_reconciles_without_waiting_for_the_resync(sandbox: Sandbox, specs: Path) -> None:
    controller, thread = start_controller(sandbox, specs, resync=300)
    try:
        assert len(running_tasks(sandbox, PLATFORM)) == 2
        cycles = controller.cycles
        edit(specs / "org-platform-dind.yaml", "    idle: 2\n", "    idle: 3\n")
        # the resync is 300 s away: a cycle well before it, for "specs changed", is the watch's
        # (the latency itself, ~0.3 s, is a figure for bench/, not a bound a loaded CI meets)
        wait_for(lambda: controller.cycles > cycles, 30)
        wait_for(
            lambda: "specs changed" in controller.status.to_json()["controller"]["lastCycleReason"],
            30,
        )
        # the third runner needs an instance the cycle adds: started once it registered
        wait_for(lambda: len(running_tasks(sandbox, PLATFORM)) == 3, 15)
        wait_for(
            lambda: (
                controller.status.to_json()["controller"]["lastCycleReason"]
                == "waiting for instances"
            ),
            5,
        )
    finally:
        controller.stop()
        thread.join(10)


def test_half_written_spec_is_not_applied(sandbox: Sandbox, specs: Path) -> None:
    controller, thread = start_controller(sandbox, specs, resync=300)
    try:
        pool_file = specs / "org-platform-dind.yaml"
        full = pool_file.read_text().replace("    idle: 2\n", "    idle: 3\n")
        cycles = controller.cycles
        pool_file.write_text(full[: full.index("  scaling:")])  # cut mid-file: no scaling
        wait_for(lambda: controller.cycles > cycles, 10)
        status = controller.status.to_json()
        assert status["controller"]["specErrors"], "the truncated spec is reported"
        assert (
            status["controller"]["lastAppliedRevision"]
            != status["controller"]["lastAttemptedRevision"]
        )
        assert len(running_tasks(sandbox, PLATFORM)) == 2, "nothing applied, nothing stopped"
        cycles = controller.cycles
        pool_file.write_text(full)  # the rest of the write lands
        wait_for(lambda: controller.cycles > cycles, 10)
        wait_for(lambda: len(running_tasks(sandbox, PLATFORM)) == 3, 15)
    finally:
        controller.stop()
        thread.join(10)


def test_resync_corrects_drift_without_an_event(sandbox: Sandbox, specs: Path) -> None:
    controller, thread = start_controller(sandbox, specs, resync=1.0)
    try:
        wait_for(lambda: len(running_tasks(sandbox, PLATFORM)) == 2, 10)
        victim = running_tasks(sandbox, PLATFORM)[0]
        sandbox.clients().ecs.stop_task(cluster=CLUSTER, task=victim, reason="by hand")
        wait_for(
            lambda: (
                len(running_tasks(sandbox, PLATFORM)) == 2
                and victim not in running_tasks(sandbox, PLATFORM)
            ),
            10,
        )
    finally:
        controller.stop()
        thread.join(10)


def test_stop_during_apply_leaves_a_state_the_next_run_converges(
    sandbox: Sandbox, specs: Path
) -> None:
    clients = sandbox.clients()
    first = plan_cycle([specs], Observer(clients), TaskTagRunnerStates(clients), utc_now())
    executed: list[str] = []
    executor = Executor(
        clients, first.observed, TaskTagRunnerStates(clients), progress=executed.append
    )
    result = executor.apply(first.plan, should_stop=lambda: len(executed) >= 4)
    assert len(result.done) == 4 and result.skipped, "stopped after the action in flight"
    assert all(message == "skipped: shutting down" for _, message in result.skipped)
    again = plan_cycle([specs], Observer(clients), TaskTagRunnerStates(clients), utc_now())
    assert Executor(clients, again.observed, TaskTagRunnerStates(clients)).apply(again.plan).ok
    sandbox.tick()
    final = plan_cycle([specs], Observer(clients), TaskTagRunnerStates(clients), utc_now())
    assert not final.plan.has_changes


def test_run_serves_status_and_exits_cleanly_on_sigterm(sandbox: Sandbox, specs: Path) -> None:
    env = {**os.environ, **sandbox.environment()}
    process = subprocess.Popen(
        run_command(specs, 30),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split("serving ", 1)[1].strip()
        wait_for(lambda: _ready(url.replace("/status", "/readyz")), 30)
        with urllib.request.urlopen(url, timeout=5) as response:
            status = json.load(response)
        assert set(status["pools"]) == {PLATFORM, "enterprise-linux-large", "mobile-app-arm64"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
