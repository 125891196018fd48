"""Lifecycle of the sandbox's moto HTTP server and its ``/moto-api`` control endpoints.

This module owns starting and stopping moto (bound to 127.0.0.1 only), waiting for readiness
with a bound, resetting its state, steering moto's state machines (so that ECS tasks stay
RUNNING), and building boto3 clients that talk to it with dummy credentials.

Two modes:

``thread`` (default)
    ``moto.server.ThreadedMotoServer`` in this process, on a port the OS picks (port 0, so there
    is no race between finding a free port and binding it). Starts in well under a second and
    lets tests share the process. moto's backends are module-global, so two thread-mode servers
    in one process would share one account; that is refused.
``process``
    ``python -m moto.server`` as a child process: isolated state, no GIL contention with the
    reconciler, and it can be killed independently. Slower to start (~1-2 s).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import IO, Any, Literal, Self

import boto3
from botocore.config import Config

from . import moto_fidelity

logger = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
#: The account moto uses for any access key that is not itself a 12-digit account id.
MOTO_ACCOUNT_ID = "123456789012"
SANDBOX_ACCESS_KEY_ID = "testing"
SANDBOX_SECRET_ACCESS_KEY = "testing"
#: moto's state-manager name for ECS tasks (``moto/ecs/models.py``, ``Task.__init__``).
ECS_TASK_MODEL = "ecs::task"
#: A "manual" transition advances one state after this many DescribeTasks calls: effectively never.
_NEVER = 2**62

ServerMode = Literal["thread", "process"]
FIDELITY_MODULE = moto_fidelity.__name__

_shared_session: boto3.session.Session | None = None
_session_lock = threading.Lock()
_clients: dict[tuple[str, str, str], Any] = {}


class MotoServerError(RuntimeError):
    """moto could not be started, did not become ready, or refused a control request."""


def sandbox_client(service: str, endpoint_url: str, region: str = DEFAULT_REGION) -> Any:
    """Return a boto3 client for ``service`` that talks to the sandbox at ``endpoint_url``.

    Credentials are explicit dummies so that no real credentials are ever looked up or sent.
    One client per service, endpoint and region is made and then shared (boto3's low-level
    clients are thread-safe; making one costs ~10 ms of CPU, and a sandbox asks for dozens),
    from one boto3 session, under a lock because sessions are not thread-safe.
    """
    global _shared_session
    key = (service, endpoint_url, region)
    with _session_lock:
        if key in _clients:
            return _clients[key]
        if _shared_session is None:
            _shared_session = boto3.session.Session()
        client = _clients[key] = _shared_session.client(
            service,
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=SANDBOX_ACCESS_KEY_ID,
            aws_secret_access_key=SANDBOX_SECRET_ACCESS_KEY,
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=5,
                max_pool_connections=32,  # shared by the agent, the world and the tests
            ),
        )
        return client


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class MotoServer:
    """A moto HTTP server on 127.0.0.1; use as a context manager or call ``start``/``stop``."""

    _thread_server_running = False
    _thread_guard = threading.Lock()

    def __init__(
        self,
        *,
        mode: ServerMode = "thread",
        port: int = 0,
        startup_timeout: float = 30.0,  # a loaded 2-core machine takes several seconds
        quiet: bool = True,
    ) -> None:
        if mode not in ("thread", "process"):
            raise ValueError(f"mode must be 'thread' or 'process', not {mode!r}")
        self.mode: ServerMode = mode
        self.host = LOCALHOST
        self._requested_port = port
        self.startup_timeout = startup_timeout
        self.quiet = quiet
        self._port: int | None = None
        self._threaded: Any = None
        self._process: subprocess.Popen[bytes] | None = None
        self._process_log: IO[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self._port is None:
            raise MotoServerError("moto server is not running; call start() first")
        return f"http://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._port is not None

    def start(self) -> Self:
        if self.running:
            return self
        if self.mode == "thread":
            self._start_thread()
        else:
            self._start_process()
        try:
            self._wait_until_ready()
        except MotoServerError:
            self.stop()
            raise
        logger.info("moto server (%s mode) ready at %s", self.mode, self.endpoint_url)
        return self

    def stop(self) -> None:
        if self._threaded is not None:
            self._threaded.stop()
            self._threaded = None
            with MotoServer._thread_guard:
                MotoServer._thread_server_running = False
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            self._process = None
        if self._process_log is not None:
            self._process_log.close()
            self._process_log = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_thread(self) -> None:
        from moto.server import ThreadedMotoServer

        moto_fidelity.apply()

        with MotoServer._thread_guard:
            if MotoServer._thread_server_running:
                raise MotoServerError(
                    "a thread-mode moto server is already running in this process and moto's "
                    "state is process-global; stop it first or use mode='process'"
                )
            MotoServer._thread_server_running = True
        if self.quiet:
            # werkzeug logs one INFO line per request; keep the test and CLI output readable.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(
            ip_address=self.host, port=self._requested_port, verbose=not self.quiet
        )
        # ThreadedMotoServer.start() waits without a timeout for the bind to succeed; if the
        # bind fails it would wait forever, so run it in a helper thread and bound the wait.
        starter = threading.Thread(target=server.start, name="moto-server-start", daemon=True)
        starter.start()
        starter.join(self.startup_timeout)
        if starter.is_alive():
            with MotoServer._thread_guard:
                MotoServer._thread_server_running = False
            raise MotoServerError(
                f"moto ThreadedMotoServer did not bind {self.host}:{self._requested_port} "
                f"within {self.startup_timeout:.0f}s (port in use?)"
            )
        self._threaded = server
        self._port = server.get_host_and_port()[1]

    def _start_process(self) -> None:
        port = self._requested_port or _free_port(self.host)
        # Kept open for the server's lifetime (startup errors are read back); closed in stop().
        self._process_log = tempfile.TemporaryFile(prefix="moto-server-")  # noqa: SIM115
        # moto with the sandbox's fidelity corrections (capacity-provider placement)
        command = [sys.executable, "-m", FIDELITY_MODULE, "-H", self.host, "-p", str(port)]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._process_log,
            stderr=subprocess.STDOUT,
        )
        self._port = port

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise MotoServerError(
                    f"moto server exited with code {self._process.returncode} during startup: "
                    f"{self._process_output()}"
                )
            try:
                self.get_transition(ECS_TASK_MODEL, timeout=1.0)
                return
            except (OSError, MotoServerError) as error:
                last_error = str(error)
            time.sleep(0.05)
        raise MotoServerError(
            f"moto server at {self.endpoint_url} not ready after {self.startup_timeout:.0f}s: "
            f"{last_error} {self._process_output()}".rstrip()
        )

    def _process_output(self) -> str:
        if self._process_log is None:
            return ""
        self._process_log.seek(0)
        return self._process_log.read()[-2000:].decode("utf-8", "replace")

    # -- /moto-api control ---------------------------------------------------------------------

    def _moto_api(
        self,
        path: str,
        *,
        payload: dict[str, Any] | None = None,
        method: str = "POST",
        timeout: float = 10.0,
    ) -> bytes:
        data = json.dumps(payload).encode() if payload is not None else b""
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/{path}",
            data=data if method == "POST" else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as error:
            raise MotoServerError(
                f"{method} /moto-api/{path} failed: HTTP {error.code} {error.read()[:500]!r}"
            ) from error

    def reset(self) -> None:
        """Drop every resource in every account and region (``POST /moto-api/reset``).

        State-manager transitions are kept: moto stores them outside the backends.
        """
        self._moto_api("reset")

    def set_transition(self, model_name: str, transition: dict[str, Any]) -> None:
        """Override how a moto model advances its status (``/moto-api/state-manager``).

        ``transition`` is ``{"progression": "immediate"}``, ``{"progression": "manual",
        "times": N}`` (advance one state after N describes) or ``{"progression": "time",
        "seconds": N}``.
        """
        self._moto_api(
            "state-manager/set-transition",
            payload={"model_name": model_name, "transition": transition},
        )

    def unset_transition(self, model_name: str) -> None:
        self._moto_api("state-manager/unset-transition", payload={"model_name": model_name})

    def get_transition(self, model_name: str, *, timeout: float = 10.0) -> dict[str, Any]:
        body = self._moto_api(
            f"state-manager/get-transition?model_name={model_name}", method="GET", timeout=timeout
        )
        result: dict[str, Any] = json.loads(body)
        return result

    def keep_tasks_running(self) -> None:
        """Make ECS tasks stay RUNNING until StopTask.

        moto registers ``{"progression": "manual", "times": 1}`` for ``ecs::task``: each
        DescribeTasks advances a task one step (RUNNING, DEACTIVATING, STOPPING, DEPROVISIONING,
        STOPPED) while desiredStatus stays RUNNING. A ``manual`` transition that needs 2**62
        DescribeTasks calls per step never advances; StopTask still sets STOPPED.
        """
        self.set_transition(ECS_TASK_MODEL, {"progression": "manual", "times": _NEVER})

    # -- clients -------------------------------------------------------------------------------

    def client(self, service: str, region: str = DEFAULT_REGION) -> Any:
        """A boto3 client for ``service`` bound to this server."""
        return sandbox_client(service, self.endpoint_url, region)
