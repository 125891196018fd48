"""Shared fixtures: spec texts to mutate, spec trees, a sandbox per test, git helpers.

`make test` hands whole files to the xdist workers (`--dist loadfile`): a module's tests run
in one worker, one after another, so a module fixture (a simulated day, a key pair) is set up
once. Spread test by test, a worker interleaves modules, and pytest sets a module fixture up
again each time it comes back to its module (`xdist_group` did not keep a group on one
worker with pytest 9.2 and xdist 3.8: the simulated day ran on three workers).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.cli.main import main as cli_main
from reconciler.sandbox.scenario import Sandbox, without_schedules
from reconciler.sandbox.server import MotoServer

REPO = Path(__file__).resolve().parent.parent

DIGEST = "sha256:" + "a" * 64

CAPACITY_PROVIDER = """\
apiVersion: ecs-reconciler/v1alpha1
kind: CapacityProvider
metadata:
  name: linux
spec:
  cluster: ci
  autoScalingGroup: ci-linux
"""

POOL = f"""\
apiVersion: ecs-reconciler/v1alpha1
kind: RunnerPool
metadata:
  name: pool-a
spec:
  cluster: ci
  scope:
    organization: acme
  labels: [self-hosted, linux]
  runner:
    version: 2.328.0
    image: ghcr.io/acme/runner:2.328.0@{DIGEST}
  docker:
    mode: dind
    image: docker:27-dind@{DIGEST}
  resources:
    cpu: 1024
    memory: 2048
  network:
    subnets: [subnet-0123456789abcdef0]
    securityGroups: [sg-0123456789abcdef0]
  capacityProvider: linux
  scaling:
    min: 0
    max: 10
    idle: 1
"""


@pytest.fixture
def spec_dir(tmp_path: Path):
    """A function writing {relative name: text} into a fresh specs directory."""

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / "specs"
        root.mkdir(exist_ok=True)
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return root

    return write


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """A writable copy of the example specs without their idle schedules, so that what they
    ask is the same at any hour (schedules are tested at fixed clocks in test_schedules.py)."""
    target = tmp_path / "specs"
    shutil.copytree(REPO / "specs", target)
    for path in target.glob("*.yaml"):
        path.write_text(without_schedules(path.read_text()))
    return target


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server (its own process) per test process, i.e. per xdist worker; every
    test that uses it resets it first (`moto`, `sandbox`), so tests never see each other."""
    # several workers start theirs at once on a loaded machine: allow a minute
    with MotoServer(mode="process", startup_timeout=60) as server:
        yield server


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    """The worker's moto server, emptied for this test."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def sandbox(specs: Path, moto_server: MotoServer) -> Iterator[Sandbox]:
    """A fresh sandbox account (the worker's moto server, reset) seeded for `specs`."""
    with Sandbox([specs], server=moto_server) as running:
        yield running


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity; returns its output."""
    completed = subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return completed.stdout.strip()


def commit(repo: Path, message: str) -> str:
    """Commit everything in `repo`; returns the new commit."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must be there) by `new` in a file."""
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def platform_pool_alone(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """A specs directory with the example capacity providers and the platform pool alone,
    with small tasks (512 CPU, 1024 MiB) and `edits` (old, new) applied to the pool; without
    its idle schedules, like `specs`, so that it asks the same at any hour."""
    target = tmp_path / "specs"
    target.mkdir()
    shutil.copy(REPO / "specs" / "capacity-providers.yaml", target)
    pool = target / "org-platform-dind.yaml"
    pool.write_text(without_schedules((REPO / "specs" / "org-platform-dind.yaml").read_text()))
    for old, new in (("cpu: 2048", "cpu: 512"), ("memory: 4096", "memory: 1024"), *edits):
        edit(pool, old, new)
    return target


#: Verbs that install signal handlers or serve until stopped: always in their own process.
PROCESS_VERBS = frozenset({"run", "sandbox"})


def run_cli(
    *args: str, cwd: Path = REPO, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`ecs-reconciler ARGS` with output captured and stdin closed: the console script's own
    `main(ARGS)` called in this process, in `cwd`, with `env` as the whole environment (a
    process costs ~0.6 s of CPU in imports alone, and the suite ran ~70). `run` and `sandbox`,
    and `timeout`, need a process: `run_cli_process`."""
    if PROCESS_VERBS & set(args[:2]):
        return run_cli_process(*args, cwd=cwd, timeout=timeout, env=env)
    out, err = io.StringIO(), io.StringIO()
    saved_environ, saved_cwd = dict(os.environ), os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        os.chdir(cwd)
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _stdin_closed(),
        ):
            try:
                code = cli_main(list(args))
            except SystemExit as exit:  # argparse: --help, --version, usage errors
                code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _stdin_closed() -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        yield
    finally:
        sys.stdin = saved


def run_cli_process(
    *args: str, cwd: Path = REPO, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`ecs-reconciler ARGS` in a subprocess, output captured, stdin closed."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, every: float = 0.2) -> float:
    """Seconds until `condition()` held; fails the test after `timeout`. Checked `every`
    seconds: conditions often ask moto, whose CPU the other tests of the machine share."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


#: Fixtures that start or use a server: the tests that take them are end-to-end.
SERVER_FIXTURES = frozenset({"moto", "moto_server", "sandbox"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server fixture `e2e` (modules that start servers or
    processes otherwise say so with `pytestmark`); `make test-unit` runs the rest.

    Files with a test marked `long` come first: xdist hands out files in this order, and a
    long file started last keeps one worker busy after the others are done."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    long_files = {item.path for item in items if item.get_closest_marker("long")}
    items.sort(key=lambda item: item.path not in long_files)  # stable: order kept otherwise
