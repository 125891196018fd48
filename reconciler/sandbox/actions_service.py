"""The simulated Actions service behind runner scale sets, over HTTP, in memory.

What `reconciler.github.scaleset` speaks, as actions/scaleset's client expects it (paths,
headers, status codes, field names) and as `FakeGitHub` hands it out: its
``POST /actions/runner-registration`` (``RemoteAuth``) calls `admin_connection`, which issues
an admin token (a JWT with ``exp``) bound to the scope of the registration token.

Two listeners, like GitHub's two hosts: the service (``{service}/tenant/_apis/...``) and the
message broker, whose queue URLs the sessions hand out (``{broker}/rest/.../messages?...``).

    GET    _apis/runtime/runnergroups/?groupName=                {count, value}
    GET    _apis/runtime/runnerscalesets?runnerGroupId=&name=    {count, value}
    GET    _apis/runtime/runnerscalesets/{id}                    200; 404 when deleted
    POST   _apis/runtime/runnerscalesets                         200 (409 name taken in group)
    PATCH  _apis/runtime/runnerscalesets/{id}                    200
    DELETE _apis/runtime/runnerscalesets/{id}                    204
    POST   _apis/runtime/runnerscalesets/{id}/sessions           200; 409 when one is active
    PATCH  _apis/runtime/runnerscalesets/{id}/sessions/{sid}     200, new queue token
    DELETE _apis/runtime/runnerscalesets/{id}/sessions/{sid}     204
    POST   _apis/runtime/runnerscalesets/{id}/acquirejobs        queue token; {count, value}
    POST   _apis/runtime/runnerscalesets/{id}/generatejitconfig  200; 409 AgentExistsException
    GET    _apis/distributedtask/pools/0/agents?agentName=       {count, value}
    DELETE _apis/distributedtask/pools/0/agents/{id}             204
    GET    {queue}?lastMessageId=n   queue token, X-ScaleSetMaxCapacity; 200 or 202 after
                                     `poll_timeout` (long poll); 401 when the token expired
    DELETE {queue}/{messageId}       204: acknowledged, never delivered again

Every service call needs ``api-version=6.0-preview`` and a valid admin token (401 otherwise);
queue calls need the session's queue token. Messages stay until deleted: the oldest one after
``lastMessageId`` is delivered (a new session starts from 0, so it gets every message its
predecessor did not acknowledge). A session not polled for `session_idle_timeout` seconds
lapses (the holder is presumed dead), which is what a 409 waits for.

Jobs (`queue_job`, `runner_connected`, `complete_job`) walk available -> acquired ->
running -> completed and emit JobAvailable, JobAssigned, JobStarted, JobCompleted into the
scale set's next message, with the statistics at that moment.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from ..clock import WallClock, wall_time

logger = logging.getLogger(__name__)

API_VERSION = "6.0-preview"
_WEBAPI = "GitHub.Actions.Runtime.WebApi"
_TASK_WEBAPI = "GitHub.DistributedTask.WebApi"

_TENANT = "/tenant"
_GROUPS = re.compile(_TENANT + r"/_apis/runtime/runnergroups/?")
_SETS = re.compile(_TENANT + r"/_apis/runtime/runnerscalesets")
_SET = re.compile(_TENANT + r"/_apis/runtime/runnerscalesets/(?P<id>\d+)")
_SESSIONS = re.compile(_TENANT + r"/_apis/runtime/runnerscalesets/(?P<id>\d+)/sessions")
_SESSION = re.compile(_SESSIONS.pattern + r"/(?P<sid>[0-9a-f-]{36})")
_ACQUIRE = re.compile(_TENANT + r"/_apis/runtime/runnerscalesets/(?P<id>\d+)/acquirejobs")
_JIT = re.compile(_TENANT + r"/_apis/runtime/runnerscalesets/(?P<id>\d+)/generatejitconfig")
_AGENTS = re.compile(_TENANT + r"/_apis/distributedtask/pools/0/agents")
_AGENT = re.compile(_TENANT + r"/_apis/distributedtask/pools/0/agents/(?P<id>\d+)")
_QUEUE = re.compile(r"/rest/_apis/runtime/runnerscalesets/(?P<id>\d+)/messages")
_QUEUE_MESSAGE = re.compile(_QUEUE.pattern + r"/(?P<mid>\d+)")


@dataclass
class _Answer:
    status: int
    body: Any = None


def _exception(status: int, name: str, message: str, namespace: str = _WEBAPI) -> _Answer:
    """The service's error body (`typeName` is what clients match on)."""
    return _Answer(status, {"typeName": f"{namespace}.{name}, {namespace}", "message": message})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token (HS256 over a random key nobody checks: clients only read ``exp``)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    return f"{header}.{body}.{_b64url(secrets.token_bytes(32))}"


@dataclass
class _ScaleSet:
    id: int
    scope: str
    name: str
    runner_group_id: int
    runner_group_name: str
    labels: list[dict[str, str]]
    disable_update: bool
    created_on: str


@dataclass
class _Session:
    session_id: str
    owner: str
    queue_token: str
    token_expires: float
    last_seen: float


@dataclass
class _Job:
    request_id: int
    scale_set_id: int
    repository: str
    job_id: str
    labels: list[str]
    state: str  # available | acquired | running | completed
    queue_time: str
    runner_id: int = 0
    runner_name: str = ""
    assign_time: str = "0001-01-01T00:00:00Z"
    runner_assign_time: str = "0001-01-01T00:00:00Z"


@dataclass
class _Runner:
    id: int
    name: str
    scale_set_id: int
    online: bool = False
    request_id: int = 0  # the job it runs (0: idle)


@dataclass
class _Queue:
    messages: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # unacknowledged
    pending: list[dict[str, Any]] = field(default_factory=list)  # events not yet in a message
    max_capacity: int | None = None


class ActionsService:
    """In-memory scale sets, sessions and message queues; one condition guards all state."""

    def __init__(
        self,
        *,
        clock: WallClock = wall_time,
        admin_token_lifetime: float = 3600.0,
        queue_token_lifetime: float = 3600.0,
        poll_timeout: float = 50.0,
        session_idle_timeout: float = 120.0,
    ) -> None:
        self.admin_token_lifetime = admin_token_lifetime
        self.queue_token_lifetime = queue_token_lifetime
        self.poll_timeout = poll_timeout
        self.session_idle_timeout = session_idle_timeout
        #: GHES before 3.18 (or without DistributedTask.AllowRunnerScaleSetCustomLabels)
        #: keeps a scale set's name as its only label and drops the others silently.
        self.custom_labels = True
        self._clock = clock
        self._cond = threading.Condition()
        self._admin_tokens: dict[str, tuple[str, float]] = {}  # token -> (scope, expiry)
        self._groups: dict[str, list[tuple[int, str]]] = {}  # scope -> [(id, name)]
        self._sets: dict[int, _ScaleSet] = {}
        self._sessions: dict[int, _Session] = {}
        self._queues: dict[int, _Queue] = {}
        self._jobs: dict[int, _Job] = {}
        self._runners: dict[int, _Runner] = {}
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._request_ids = itertools.count(1001)
        self.sessions_opened = 0
        self.session_owners: list[str] = []  # who opened each session, in order
        self.conflicts = 0
        self._log: list[tuple[str, str, int]] = []
        self._closed = False
        #: Called (outside this service's lock) when a JIT runner is registered or removed,
        #: so that FakeGitHub's REST view lists scale-set runners as GitHub does.
        self.on_runner_registered: Callable[[str, str, list[str], int], None] | None = None
        self.on_runner_removed: Callable[[str, str], None] | None = None
        self._effects: list[Callable[[], None]] = []
        self._faults: list[int] = []
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Serve the service and the broker on two OS-chosen ports of 127.0.0.1."""
        for role in ("service", "broker"):
            handler = type("Handler", (_Handler,), {"service": self, "role": role})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            thread = threading.Thread(
                target=server.serve_forever, args=(0.05,), name=f"actions-{role}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def close(self) -> None:
        """Wake every long poll and stop serving."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _base(self, index: int) -> str:
        if not self._servers:
            raise RuntimeError("ActionsService is not started")
        host, port = self._servers[index].server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def service_url(self) -> str:
        """What ``runner-registration`` answers as ``url``."""
        return f"{self._base(0)}{_TENANT}/"

    @property
    def broker_url(self) -> str:
        """The host of the message queues."""
        return self._base(1)

    # -- what FakeGitHub and tests call --------------------------------------------------------

    def admin_connection(self, scope: str) -> dict[str, str]:
        """``{"url", "token"}`` for a scope, as ``runner-registration`` answers."""
        with self._cond:
            expires = self._clock() + self.admin_token_lifetime
            token = _jwt({"exp": int(expires), "scope": scope, "jti": uuid.uuid4().hex})
            self._admin_tokens[token] = (scope, expires)
            return {"url": self.service_url, "token": token}

    def set_runner_groups(self, scope: str, groups: list[tuple[int, str]]) -> None:
        """The scope's runner groups (FakeGitHub keeps them in step with its REST view)."""
        with self._cond:
            self._groups[scope] = list(groups)

    def scale_sets(self, scope: str | None = None) -> list[dict[str, Any]]:
        """The scale sets (of a scope), as the service shows them, with their ``scope``."""
        with self._cond:
            return [
                {**self._shown(s), "scope": s.scope}
                for s in self._sets.values()
                if scope in (None, s.scope)
            ]

    def delete_scale_set(self, scale_set_id: int) -> None:
        """Delete a scale set as GitHub does after 7 idle days."""
        with self._cond:
            self._drop(scale_set_id)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next `n` requests (service or broker) with `status`."""
        with self._cond:
            self._faults.extend([status] * n)

    def expire_queue_tokens(self) -> None:
        """Make every session's queue token expired now (the next queue call gets 401)."""
        with self._cond:
            for session in self._sessions.values():
                session.token_expires = self._clock() - 1

    def expire_admin_tokens(self) -> None:
        """Revoke every admin token (the next service call gets 401)."""
        with self._cond:
            self._admin_tokens.clear()

    def active_sessions(self, scale_set_id: int) -> int:
        """1 when the scale set has a live session, else 0."""
        with self._cond:
            self._lapse_sessions()
            return int(scale_set_id in self._sessions)

    def max_capacity(self, scale_set_id: int) -> int | None:
        """The last ``X-ScaleSetMaxCapacity`` a poll sent."""
        with self._cond:
            queue = self._queues.get(scale_set_id)
            return None if queue is None else queue.max_capacity

    def unacknowledged(self, scale_set_id: int) -> list[int]:
        """Ids of the messages not deleted yet."""
        with self._cond:
            return [mid for mid, _ in self._queue(scale_set_id).messages]

    def queue_job(
        self, scope: str, labels: list[str], repository: str, job_id: int | str
    ) -> int | None:
        """A job asks for `labels`: the first scale set of `scope` whose labels include them
        all gets it (JobAvailable). Returns the runner request id, None if no scale set."""
        with self._cond:
            wanted = {label.lower() for label in labels}
            for scale_set in sorted(self._sets.values(), key=lambda s: s.id):
                names = {label["name"].lower() for label in scale_set.labels}
                if scale_set.scope == scope and wanted <= names:
                    request_id = next(self._request_ids)
                    job = _Job(
                        request_id, scale_set.id, repository, str(job_id), list(labels),
                        "available", self._now_iso(),
                    )  # fmt: skip
                    self._jobs[request_id] = job
                    self._emit(job, "JobAvailable")
                    return request_id
            return None

    def runner_connected(self, name: str) -> bool:
        """A JIT runner started and connects: it takes an acquired job if one waits."""
        with self._cond:
            runner = self._runner_named(name)
            if runner is None:
                return False
            runner.online = True
            self._start_jobs(runner.scale_set_id)
            return True

    def complete_job(self, request_id: int, result: str = "succeeded") -> str:
        """The job's runner finishes it (JobCompleted); the ephemeral runner deregisters.
        Returns the runner's name."""
        with self._cond:
            job = self._jobs[request_id]
            if job.state != "running":
                raise ValueError(f"job {request_id} is {job.state}, not running")
            job.state = "completed"
            self._emit(job, "JobCompleted", result=result)
            self._forget_runner(job.runner_id)
            name = job.runner_name
        self._run_effects()
        return name

    def runner_gone(self, name: str, notify: bool = True) -> None:
        """A runner exits before taking a job (or was deleted through the REST API, then
        `notify` is False): its registration goes."""
        with self._cond:
            runner = self._runner_named(name)
            if runner is not None and not runner.request_id:
                if notify:
                    self._forget_runner(runner.id)
                else:
                    del self._runners[runner.id]
        if notify:  # never from inside FakeGitHub's lock: effects take that lock
            self._run_effects()

    def _forget_runner(self, runner_id: int) -> None:
        """Drop a registration (lock held); the REST view is told after the lock."""
        runner = self._runners.pop(runner_id, None)
        scale_set = self._sets.get(runner.scale_set_id) if runner else None
        if runner is not None and scale_set is not None and self.on_runner_removed:
            callback, scope, name = self.on_runner_removed, scale_set.scope, runner.name
            self._effects.append(lambda: callback(scope, name))

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        """The jobs (in a state): request id, scale set, state, runner name."""
        with self._cond:
            return [
                {
                    "request_id": j.request_id,
                    "scale_set_id": j.scale_set_id,
                    "state": j.state,
                    "runner_name": j.runner_name,
                    "repository": j.repository,
                    "job_id": j.job_id,
                }
                for j in self._jobs.values()
                if state in (None, j.state)
            ]

    def runners(self, scale_set_id: int | None = None) -> list[dict[str, Any]]:
        """The registered runners: id, name, scale set, online, busy."""
        with self._cond:
            return [
                {
                    "id": r.id,
                    "name": r.name,
                    "scale_set_id": r.scale_set_id,
                    "online": r.online,
                    "busy": bool(r.request_id),
                }
                for r in self._runners.values()
                if scale_set_id in (None, r.scale_set_id)
            ]

    @property
    def request_log(self) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of every request."""
        with self._cond:
            return list(self._log)

    def statistics(self, scale_set_id: int) -> dict[str, int]:
        """``RunnerScaleSetStatistic`` of a scale set now."""
        with self._cond:
            return self._statistics(scale_set_id)

    # -- request handling ----------------------------------------------------------------------

    def handle(self, role: str, method: str, target: str, headers: Any, raw: bytes) -> _Answer:
        split = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        with self._cond:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            with self._cond:
                self._log.append((method, split.path, fault))
            return _exception(fault, "ServiceUnavailableException", "injected fault")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            answer = _exception(400, "InvalidRequestBody", "request body is not JSON")
        else:
            if role == "broker":
                answer = self._broker(method, split.path, query, headers)
            else:
                answer = self._service(method, split.path, query, headers, body)
        with self._cond:
            self._log.append((method, split.path, answer.status))
        self._run_effects()
        return answer

    def _run_effects(self) -> None:
        with self._cond:
            effects, self._effects = self._effects, []
        for effect in effects:
            effect()

    def _service(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: Any
    ) -> _Answer:
        if query.get("api-version") != API_VERSION:
            return _exception(400, "VssInvalidPreviewVersionException", "api-version required")
        with self._cond:
            self._lapse_sessions()
            if method == "POST" and (match := _ACQUIRE.fullmatch(path)):
                return self._acquire(int(match["id"]), headers, body)
            scope = self._admin_scope(headers.get("Authorization", ""))
            if scope is None:
                return _Answer(401, None)
            if method == "GET" and _GROUPS.fullmatch(path):
                name = query.get("groupName", "")
                groups = [(i, n) for i, n in self._groups_of(scope) if n == name]
                value = [
                    {"id": i, "name": n, "size": 0, "isDefaultGroup": i == 1} for i, n in groups
                ]
                return _Answer(200, {"count": len(value), "value": value})
            if _SETS.fullmatch(path):
                if method == "GET":
                    return self._list_sets(scope, query)
                if method == "POST":
                    return self._create_set(scope, body)
            if match := _SET.fullmatch(path):
                scale_set = self._sets.get(int(match["id"]))
                if scale_set is None or scale_set.scope != scope:
                    return _exception(404, "RunnerScaleSetNotFoundException", "not found")
                if method == "GET":
                    return _Answer(200, self._shown(scale_set))
                if method == "PATCH":
                    return self._update_set(scale_set, body)
                if method == "DELETE":
                    self._drop(scale_set.id)
                    return _Answer(204)
            if method == "POST" and (match := _SESSIONS.fullmatch(path)):
                return self._open_session(scope, int(match["id"]), body)
            if match := _SESSION.fullmatch(path):
                return self._session_call(method, int(match["id"]), match["sid"])
            if method == "POST" and (match := _JIT.fullmatch(path)):
                return self._jit(scope, int(match["id"]), body)
            if method == "GET" and _AGENTS.fullmatch(path):
                name = query.get("agentName", "")
                value = [
                    {"id": r.id, "name": r.name, "runnerScaleSetId": r.scale_set_id}
                    for r in self._runners.values()
                    if r.name == name and self._sets[r.scale_set_id].scope == scope
                ]
                return _Answer(200, {"count": len(value), "value": value})
            if method == "DELETE" and (match := _AGENT.fullmatch(path)):
                runner = self._runners.get(int(match["id"]))
                if runner is None:
                    return _exception(
                        404, "AgentNotFoundException", "runner not found", _TASK_WEBAPI
                    )
                if runner.request_id:
                    message = f"runner {runner.name} is running a job"
                    return _exception(400, "JobStillRunningException", message, _TASK_WEBAPI)
                self._forget_runner(runner.id)
                return _Answer(204)
        return _Answer(404, {"message": f"no route {method} {path}"})

    def _broker(self, method: str, path: str, query: dict[str, str], headers: Any) -> _Answer:
        with self._cond:
            if match := _QUEUE_MESSAGE.fullmatch(path):
                scale_set_id, message_id = int(match["id"]), int(match["mid"])
                if method != "DELETE":
                    return _Answer(405)
                if self._queue_session(scale_set_id, query, headers) is None:
                    return _Answer(401)
                queue = self._queue(scale_set_id)
                queue.messages = [(i, m) for i, m in queue.messages if i != message_id]
                return _Answer(204)
            match = _QUEUE.fullmatch(path)
            if match is None or method != "GET":
                return _Answer(404, {"message": f"no route {method} {path}"})
            scale_set_id = int(match["id"])
            if headers.get("Accept", "") != f"application/json; api-version={API_VERSION}":
                return _exception(400, "VssInvalidPreviewVersionException", "Accept api-version")
            capacity = headers.get("X-ScaleSetMaxCapacity")
            if capacity is None or not capacity.isdigit():
                return _exception(400, "ArgumentException", "X-ScaleSetMaxCapacity required")
            try:
                last = int(query.get("lastMessageId", "0"))
            except ValueError:
                return _exception(400, "ArgumentException", "lastMessageId must be an integer")
            session = self._queue_session(scale_set_id, query, headers)
            if session is None:
                return _Answer(401)
            queue = self._queue(scale_set_id)
            queue.max_capacity = int(capacity)
            deadline = time.monotonic() + self.poll_timeout
            while True:
                session.last_seen = self._clock()
                if self._sessions.get(scale_set_id) is not session:
                    return _Answer(401)  # deleted or lapsed while waiting
                if queue.pending:
                    self._seal(scale_set_id)
                for message_id, message in queue.messages:
                    if message_id > last:
                        return _Answer(200, message)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return _Answer(202)
                self._cond.wait(min(remaining, 0.5))

    # -- service internals (lock held) ---------------------------------------------------------

    def _now_iso(self) -> str:
        moment = datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _admin_scope(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        entry = self._admin_tokens.get(token) if scheme == "Bearer" else None
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def _groups_of(self, scope: str) -> list[tuple[int, str]]:
        return self._groups.get(scope, [(1, "Default")])

    def _queue(self, scale_set_id: int) -> _Queue:
        return self._queues.setdefault(scale_set_id, _Queue())

    def _shown(self, s: _ScaleSet) -> dict[str, Any]:
        return {
            "id": s.id,
            "name": s.name,
            "runnerGroupId": s.runner_group_id,
            "runnerGroupName": s.runner_group_name,
            "labels": s.labels,
            "RunnerSetting": {"disableUpdate": s.disable_update},
            "createdOn": s.created_on,
            "runnerJitConfigUrl": f"{self.service_url}_apis/runtime/runnerscalesets/{s.id}"
            "/generatejitconfig",
            "statistics": self._statistics(s.id),
        }

    def _list_sets(self, scope: str, query: dict[str, str]) -> _Answer:
        try:
            group_id = int(query.get("runnerGroupId", ""))
        except ValueError:
            return _exception(400, "ArgumentException", "runnerGroupId must be an integer")
        name = query.get("name")
        value = [
            self._shown(s)
            for s in self._sets.values()
            if s.scope == scope and s.runner_group_id == group_id and name in (None, s.name)
        ]
        return _Answer(200, {"count": len(value), "value": value})

    def _validated(self, scope: str, body: Any) -> tuple[dict[str, Any], str] | _Answer:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            return _exception(400, "ArgumentException", "name is required")
        labels = body.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(
                isinstance(x, dict) and isinstance(x.get("name"), str) and x["name"] for x in labels
            )
        ):
            return _exception(400, "ArgumentException", "labels must be a non-empty list")
        group_id = body.get("runnerGroupId") or 1
        group = next((n for i, n in self._groups_of(scope) if i == group_id), None)
        if group is None:
            return _exception(404, "RunnerGroupNotFoundException", f"no runner group {group_id}")
        if not self.custom_labels:
            body = {**body, "labels": [{"type": "System", "name": body["name"]}]}
        return body, group

    def _create_set(self, scope: str, body: Any) -> _Answer:
        checked = self._validated(scope, body)
        if isinstance(checked, _Answer):
            return checked
        body, group = checked
        group_id = body.get("runnerGroupId") or 1
        if any(
            s.scope == scope and s.runner_group_id == group_id and s.name == body["name"]
            for s in self._sets.values()
        ):
            message = f"a runner scale set named {body['name']} already exists in the group"
            return _exception(409, "RunnerScaleSetExistsException", message)
        scale_set = _ScaleSet(
            next(self._ids), scope, body["name"], group_id, group,
            [{"type": x.get("type") or "System", "name": x["name"]} for x in body["labels"]],
            bool((body.get("RunnerSetting") or {}).get("disableUpdate", False)), self._now_iso(),
        )  # fmt: skip
        self._sets[scale_set.id] = scale_set
        return _Answer(200, self._shown(scale_set))

    def _update_set(self, scale_set: _ScaleSet, body: Any) -> _Answer:
        checked = self._validated(scale_set.scope, body)
        if isinstance(checked, _Answer):
            return checked
        body, group = checked
        scale_set.name = body["name"]
        scale_set.runner_group_id, scale_set.runner_group_name = (
            body.get("runnerGroupId") or 1,
            group,
        )
        scale_set.labels = [
            {"type": x.get("type") or "System", "name": x["name"]} for x in body["labels"]
        ]
        scale_set.disable_update = bool((body.get("RunnerSetting") or {}).get("disableUpdate"))
        return _Answer(200, self._shown(scale_set))

    def _drop(self, scale_set_id: int) -> None:
        self._sets.pop(scale_set_id, None)
        self._sessions.pop(scale_set_id, None)
        self._queues.pop(scale_set_id, None)
        for runner_id in [r.id for r in self._runners.values() if r.scale_set_id == scale_set_id]:
            del self._runners[runner_id]
        self._cond.notify_all()

    def _lapse_sessions(self) -> None:
        now = self._clock()
        for scale_set_id, session in list(self._sessions.items()):
            if now - session.last_seen > self.session_idle_timeout:
                del self._sessions[scale_set_id]

    def _session_body(self, scale_set_id: int, session: _Session) -> dict[str, Any]:
        queue_url = (
            f"{self.broker_url}/rest/_apis/runtime/runnerscalesets/{scale_set_id}/messages"
            f"?sessionId={session.session_id}"
        )
        return {
            "sessionId": session.session_id,
            "ownerName": session.owner,
            "runnerScaleSet": self._shown(self._sets[scale_set_id]),
            "messageQueueUrl": queue_url,
            "messageQueueAccessToken": session.queue_token,
            "statistics": self._statistics(scale_set_id),
        }

    def _open_session(self, scope: str, scale_set_id: int, body: Any) -> _Answer:
        scale_set = self._sets.get(scale_set_id)
        if scale_set is None or scale_set.scope != scope:
            return _exception(404, "RunnerScaleSetNotFoundException", "not found")
        owner = body.get("ownerName") if isinstance(body, dict) else None
        if not isinstance(owner, str) or not owner:
            return _exception(400, "ArgumentException", "ownerName is required")
        if scale_set_id in self._sessions:
            self.conflicts += 1
            holder = self._sessions[scale_set_id].owner
            message = (
                f"The runner scale set {scale_set.name} already has an active session "
                f"for owner {holder}."
            )
            return _exception(409, "RunnerScaleSetSessionConflictException", message)
        now = self._clock()
        session = _Session(
            str(uuid.uuid4()), owner, _jwt({"exp": 0, "jti": uuid.uuid4().hex}),
            now + self.queue_token_lifetime, now,
        )  # fmt: skip
        self._sessions[scale_set_id] = session
        self.sessions_opened += 1
        self.session_owners.append(owner)
        return _Answer(200, self._session_body(scale_set_id, session))

    def _session_call(self, method: str, scale_set_id: int, session_id: str) -> _Answer:
        session = self._sessions.get(scale_set_id)
        if session is None or session.session_id != session_id:
            return _exception(404, "RunnerScaleSetSessionNotFoundException", "no such session")
        if method == "DELETE":
            del self._sessions[scale_set_id]
            self._cond.notify_all()
            return _Answer(204)
        if method == "PATCH":
            now = self._clock()
            session.queue_token = _jwt({"exp": 0, "jti": uuid.uuid4().hex})
            session.token_expires, session.last_seen = now + self.queue_token_lifetime, now
            return _Answer(200, self._session_body(scale_set_id, session))
        return _Answer(405)

    def _queue_session(
        self, scale_set_id: int, query: dict[str, str], headers: Any
    ) -> _Session | None:
        """The live session whose queue token authorizes this request (None: 401)."""
        self._lapse_sessions()
        session = self._sessions.get(scale_set_id)
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if session is None or scheme != "Bearer" or token != session.queue_token:
            return None
        if "sessionId" in query and query["sessionId"] != session.session_id:
            return None
        if session.token_expires <= self._clock():
            return None
        session.last_seen = self._clock()
        return session

    def _acquire(self, scale_set_id: int, headers: Any, body: Any) -> _Answer:
        if self._queue_session(scale_set_id, {}, headers) is None:
            return _Answer(401)
        if not isinstance(body, list) or not all(isinstance(i, int) for i in body):
            return _exception(400, "ArgumentException", "expected a list of request ids")
        acquired = []
        for request_id in body:
            job = self._jobs.get(request_id)
            if job is not None and job.scale_set_id == scale_set_id and job.state == "available":
                job.state, job.assign_time = "acquired", self._now_iso()
                self._emit(job, "JobAssigned")
                acquired.append(request_id)
        self._start_jobs(scale_set_id)
        return _Answer(200, {"count": len(acquired), "value": acquired})

    def _jit(self, scope: str, scale_set_id: int, body: Any) -> _Answer:
        scale_set = self._sets.get(scale_set_id)
        if scale_set is None or scale_set.scope != scope:
            return _exception(404, "RunnerScaleSetNotFoundException", "not found")
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            return _exception(400, "ArgumentException", "name is required")
        if any(
            r.name == name and self._sets[r.scale_set_id].scope == scope
            for r in self._runners.values()
        ):
            message = f"A runner with the name {name} already exists."
            return _exception(409, "AgentExistsException", message, _TASK_WEBAPI)
        runner = _Runner(next(self._ids), name, scale_set_id)
        self._runners[runner.id] = runner
        if self.on_runner_registered is not None:
            callback, group = self.on_runner_registered, scale_set.runner_group_id
            labels = [label["name"] for label in scale_set.labels]
            self._effects.append(lambda: callback(scope, name, labels, group))
        secret = {"runner_id": runner.id, "name": name, "scale_set_id": scale_set_id,
                  "secret": secrets.token_hex(16)}  # fmt: skip
        return _Answer(
            200,
            {
                "runner": {"id": runner.id, "name": name, "runnerScaleSetId": scale_set_id},
                "encodedJITConfig": base64.b64encode(json.dumps(secret).encode()).decode(),
            },
        )

    def _runner_named(self, name: str) -> _Runner | None:
        return next((r for r in self._runners.values() if r.name == name), None)

    def _start_jobs(self, scale_set_id: int) -> None:
        """Acquired jobs go to idle connected runners of the scale set (JobStarted)."""
        idle = [
            r for r in self._runners.values()
            if r.scale_set_id == scale_set_id and r.online and not r.request_id
        ]  # fmt: skip
        waiting = sorted(
            (
                j
                for j in self._jobs.values()
                if j.scale_set_id == scale_set_id and j.state == "acquired"
            ),
            key=lambda j: j.request_id,
        )
        for runner, job in zip(idle, waiting, strict=False):
            runner.request_id = job.request_id
            job.state, job.runner_id, job.runner_name = "running", runner.id, runner.name
            job.runner_assign_time = self._now_iso()
            self._emit(job, "JobStarted")

    def _emit(self, job: _Job, kind: str, result: str = "") -> None:
        owner, _, repo = job.repository.partition("/")
        event: dict[str, Any] = {
            "messageType": kind,
            "runnerRequestId": job.request_id,
            "repositoryName": repo,
            "ownerName": owner,
            "jobId": job.job_id,
            "jobWorkflowRef": f"{job.repository}/.github/workflows/ci.yml@refs/heads/main",
            "jobDisplayName": f"job {job.job_id}",
            "workflowRunId": job.request_id,
            "eventName": "push",
            "requestLabels": job.labels,
            "queueTime": job.queue_time,
            "scaleSetAssignTime": job.assign_time,
            "runnerAssignTime": job.runner_assign_time,
            "finishTime": self._now_iso() if kind == "JobCompleted" else "0001-01-01T00:00:00Z",
        }
        if kind == "JobAvailable":
            event["acquireJobUrl"] = (
                f"{self.service_url}_apis/runtime/runnerscalesets/{job.scale_set_id}/acquirejobs"
            )
        if kind in ("JobStarted", "JobCompleted"):
            event["runnerId"], event["runnerName"] = job.runner_id, job.runner_name
        if kind == "JobCompleted":
            event["result"] = result
        self._queue(job.scale_set_id).pending.append(event)
        self._cond.notify_all()

    def _seal(self, scale_set_id: int) -> None:
        """Pending events become one message, with the statistics now."""
        queue = self._queue(scale_set_id)
        message_id = next(self._message_ids)
        message = {
            "messageId": message_id,
            "messageType": "RunnerScaleSetJobMessages",
            "body": json.dumps(queue.pending),
            "statistics": self._statistics(scale_set_id),
        }
        queue.messages.append((message_id, message))
        queue.pending = []

    def _statistics(self, scale_set_id: int) -> dict[str, int]:
        jobs = [j for j in self._jobs.values() if j.scale_set_id == scale_set_id]
        runners = [r for r in self._runners.values() if r.scale_set_id == scale_set_id]
        count = lambda state: sum(1 for j in jobs if j.state == state)  # noqa: E731
        busy = sum(1 for r in runners if r.request_id)
        return {
            "totalAvailableJobs": count("available"),
            "totalAcquiredJobs": count("acquired"),
            "totalAssignedJobs": count("acquired") + count("running"),
            "totalRunningJobs": count("running"),
            "totalRegisteredRunners": len(runners),
            "totalBusyRunners": busy,
            "totalIdleRunners": len(runners) - busy,
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    service: ActionsService
    role: str

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        answer = self.service.handle(self.role, self.command, self.path, self.headers, raw)
        self.send_response(answer.status)
        if answer.body is None:
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = json.dumps(answer.body).encode()
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("actions service: " + format, *args)
