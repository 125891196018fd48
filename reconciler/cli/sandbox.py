"""`ecs-reconciler sandbox`: the whole loop on a local, seeded AWS account (moto over HTTP).

`sandbox` (or `sandbox run`): validate -> plan -> apply -> plan; exits 0 only if the last
plan is empty. `sandbox serve`: keep a seeded endpoint running (simulated ECS agent and
runners included) and print the `export` lines that point `plan`, `apply` or the AWS CLI at it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

from ..aws.observe import Observer
from ..controller.loop import Controller, ControllerSettings
from ..controller.server import ControllerServer
from ..plan.guard import GuardPolicy
from ..plan.render_text import render_text
from ..reconcile import plan_cycle
from ..sandbox.runners import TaskTagRunnerStates
from ..sandbox.scenario import Sandbox
from ..spec.diagnostics import render_text as render_diagnostics
from .apply import apply_cycle
from .common import EXIT_ERROR, EXIT_OK
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo loop or serve."""
    paths = list(args.specs or ["specs"])
    if args.mode == "serve":
        return serve(paths)
    if args.mode == "live":
        return live(paths, args.listen)
    return demo(paths)


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def demo(paths: list[str]) -> int:
    """validate -> plan -> apply -> plan against a fresh sandbox."""
    _step("validate")
    with Sandbox(paths) as sandbox:
        clients = sandbox.clients()
        cycle = plan_cycle(paths, Observer(clients), TaskTagRunnerStates(clients))
        sys.stdout.write(render_diagnostics(cycle.spec_set.diagnostics))
        print(summary(cycle.spec_set))
        for pool in cycle.spec_set.pools:
            print(f"  {describe_pool(pool)}")
        if not cycle.spec_set.ok:
            return EXIT_ERROR
        print(f"sandbox AWS endpoint: {sandbox.endpoint_url} (region {sandbox.region})")
        _step("plan")
        print(render_text(cycle.plan), end="")
        _step("apply")
        applied = apply_cycle(cycle, clients, TaskTagRunnerStates(clients), GuardPolicy())
        sandbox.tick()  # the new runners boot and register with (simulated) GitHub
        _step("plan again")
        read_only = sandbox.clients(read_only=True)
        second = plan_cycle(paths, Observer(read_only), TaskTagRunnerStates(read_only))
        print(render_text(second.plan), end="")
        calls = read_only.total_calls()
        print(f"\n(the last plan made {calls} AWS API calls)")
        if applied != EXIT_OK or second.plan.has_changes:
            print("sandbox: NOT converged", file=sys.stderr)
            return EXIT_ERROR
        print("sandbox: converged, the second plan is empty.")
        return EXIT_OK


def serve(paths: list[str]) -> int:
    """Keep a seeded sandbox running until Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: moto's process is ended
    with Sandbox(paths, mode="process") as sandbox:
        print("# sandbox AWS is serving; point the CLI at it with:")
        for name, value in sandbox.environment().items():
            print(f"export {name}={value}")
        print("# Ctrl-C stops it.", flush=True)
        try:
            while True:
                sandbox.tick()
                time.sleep(1.0)
        except KeyboardInterrupt:
            print("\nsandbox stopped.")
    return EXIT_OK


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def live(paths: list[str], listen: str) -> int:
    """The controller on a sandbox, with a live view of pools and runners, until Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)
    with Sandbox(paths, mode="process") as sandbox:
        clients = sandbox.clients()
        settings = ControllerSettings(spec_paths=paths, resync_interval=5.0)
        controller = Controller(settings, clients, TaskTagRunnerStates(clients))
        host, _, port = listen.rpartition(":")
        loop = threading.Thread(target=controller.run, name="controller", daemon=True)
        server = ControllerServer(
            host, int(port), controller.status, loop.is_alive, controller.metrics.render
        )
        server.start()
        loop.start()
        print(f"controller on the sandbox; status at http://{server.address}/status")
        print(f"edit {', '.join(paths)} and watch it converge; Ctrl-C stops.", flush=True)
        shown = ""
        try:
            while True:
                sandbox.tick()  # new runners come online
                view = render_status(controller.status.to_json())
                pools = view.split("\n\n", 1)[-1]  # redraw when pools change, not every cycle
                if pools != shown:
                    print(f"\n{time.strftime('%H:%M:%S')}\n{view}", flush=True)
                    shown = pools
                time.sleep(1.0)
        except KeyboardInterrupt:
            controller.stop()
            loop.join(timeout=30)
            server.close()
            print("\nstopped.")
    return EXIT_OK
