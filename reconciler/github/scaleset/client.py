"""A client for GitHub's runner scale-set service (the Actions service), after actions/scaleset.

The way in (``client.go``)::

    POST {api}{scope}/actions/runners/registration-token            REST, 201 {token, expires_at}
    POST {api}/actions/runner-registration                          Authorization: RemoteAuth <t>
         {"url": <config URL>, "runner_event": "register"}          -> {"url", "token" (a JWT)}

then, on the Actions service at ``url`` with ``Authorization: Bearer <admin token>`` and
``api-version=6.0-preview`` on every query (the admin token is refreshed 60 s before the
``exp`` of its JWT, and once more on a 401)::

    GET    _apis/runtime/runnergroups/?groupName={name}              {count, value: [group]}
    GET    _apis/runtime/runnerscalesets?runnerGroupId={id}&name={n} {count, value: [scale set]}
    GET    _apis/runtime/runnerscalesets/{id}                        scale set; 404 when deleted
    POST   _apis/runtime/runnerscalesets                             200 scale set
    PATCH  _apis/runtime/runnerscalesets/{id}                        200 scale set
    DELETE _apis/runtime/runnerscalesets/{id}                        204
    POST   _apis/runtime/runnerscalesets/{id}/generatejitconfig      {name, workFolder} -> 200
    GET    _apis/distributedtask/pools/0/agents?agentName={name}     {count, value: [runner]}
    DELETE _apis/distributedtask/pools/0/agents/{id}                 204

Message sessions are in `session`. The config URL is the scope's web URL
(``https://github.com/acme``, ``https://ghes.example/enterprises/e``,
``https://github.com/acme/app``), derived from the REST API URL unless given.

Requests are counted in ``calls`` by endpoint template. Tokens and JIT configs are never logged.
Every attempt of a request that is not a GET passes `fencing.check` first with its worst case
(`mutation_timeout`, 5 s, which is also its timeout), as the REST client's do: a listener of a
replica that lost its lease acquires no job and opens no session.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from ... import fencing
from ...clock import WallClock, wall_time
from ..client import AdminConnection, GitHubClient, GitHubError, Scope
from .errors import ActionsServiceError, RunnerExists, classify
from .messages import MessageFormatError, Statistics

logger = logging.getLogger(__name__)

API_VERSION = "6.0-preview"
SCALE_SETS = "_apis/runtime/runnerscalesets"
RUNNERS = "_apis/distributedtask/pools/0/agents"
#: Refresh the admin token this long before its JWT's ``exp`` (as upstream).
ADMIN_TOKEN_MARGIN = 60.0
#: Runner group id of the default group (upstream's examples use it without a lookup).
DEFAULT_RUNNER_GROUP_ID = 1


@dataclass(frozen=True)
class Label:
    """A scale-set label; ``type`` is "System" for the ones a scale set is created with."""

    name: str
    type: str = "System"


@dataclass(frozen=True)
class RunnerGroup:
    """A runner group as the Actions service shows it."""

    id: int
    name: str
    is_default: bool = False


@dataclass(frozen=True)
class ScaleSet:
    """A runner scale set (``RunnerScaleSet``)."""

    id: int
    name: str
    runner_group_id: int
    runner_group_name: str = ""
    labels: tuple[Label, ...] = ()
    disable_update: bool = False
    runner_jit_config_url: str = ""
    statistics: Statistics = field(default_factory=Statistics)

    @property
    def label_names(self) -> list[str]:
        """Label names, in order."""
        return [label.name for label in self.labels]

    @classmethod
    def from_api(cls, data: Any) -> ScaleSet:
        """Parse the service's JSON (note the capitalised ``RunnerSetting`` key)."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), int):
            raise MessageFormatError(f"runner scale set: expected an object with an id: {data!r}")
        labels = tuple(
            Label(str(label.get("name", "")), str(label.get("type") or "System"))
            for label in data.get("labels") or []
        )
        setting = data.get("RunnerSetting") or {}
        return cls(
            id=data["id"],
            name=str(data.get("name", "")),
            runner_group_id=int(data.get("runnerGroupId") or 0),
            runner_group_name=str(data.get("runnerGroupName") or ""),
            labels=labels,
            disable_update=bool(setting.get("disableUpdate", False)),
            runner_jit_config_url=str(data.get("runnerJitConfigUrl") or ""),
            statistics=Statistics.from_api(data.get("statistics")),
        )


def scale_set_body(
    name: str, runner_group_id: int, labels: list[str], disable_update: bool = True
) -> dict[str, Any]:
    """The body of a create or update: labels default to the name (as upstream)."""
    if not name and not labels:
        raise ValueError("a runner scale set needs a name or at least one label")
    return {
        "name": name,
        "runnerGroupId": runner_group_id,
        "labels": [{"name": label, "type": "System"} for label in (labels or [name])],
        "RunnerSetting": {"disableUpdate": disable_update},
    }


@dataclass(frozen=True)
class RunnerReference:
    """A runner of a scale set (``RunnerReference``)."""

    id: int
    name: str
    runner_scale_set_id: int = 0


@dataclass(frozen=True)
class ScaleSetJitConfig:
    """A just-in-time runner of a scale set; ``encoded_jit_config`` is a secret."""

    runner: RunnerReference
    encoded_jit_config: str = field(repr=False)


def config_url(api_url: str, scope: Scope, web_url: str | None = None) -> str:
    """The scope's web URL, which ``runner-registration`` binds the admin token to.

    ``https://api.github.com`` -> ``https://github.com``; ``https://api.X.ghe.com`` ->
    ``https://X.ghe.com``; GHES ``https://ghes.example/api/v3`` -> ``https://ghes.example``.
    """
    if web_url is None:
        parts = urlsplit(api_url.rstrip("/"))
        host, path = parts.netloc, parts.path
        if host == "api.github.com" or (host.startswith("api.") and host.endswith(".ghe.com")):
            host = host.removeprefix("api.")
        path = path.removesuffix("/api/v3")
        web_url = f"{parts.scheme}://{host}{path}"
    web_url = web_url.rstrip("/")
    if scope.kind == "enterprise":
        return f"{web_url}/enterprises/{scope.name}"
    return f"{web_url}/{scope.name}"


def token_expiry(jwt: str) -> float:
    """The ``exp`` claim of a JWT, read without verifying it (the service checks it)."""
    try:
        claims_b64 = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError) as error:
        raise ActionsServiceError(
            0, "POST", "/actions/runner-registration", "admin token is not a JWT with exp"
        ) from error


class ScaleSetClient:
    """One scope's scale sets on the Actions service; thread-safe."""

    def __init__(
        self,
        github: GitHubClient,
        scope: Scope,
        *,
        web_url: str | None = None,
        clock: WallClock = wall_time,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 30.0,
        poll_timeout: float = 70.0,
        mutation_timeout: float = 5.0,
        user_agent: str = "ecs-runner-reconciler",
    ) -> None:
        self.github = github
        self.scope = scope
        self.config_url = config_url(github.api_url, scope, web_url)
        self.calls: Counter[str] = Counter()
        self.max_retries = max_retries
        self.poll_timeout = poll_timeout
        self.mutation_timeout = mutation_timeout
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._connection: AdminConnection | None = None
        self._expires_at = 0.0
        self._http = httpx.Client(timeout=timeout, headers={"User-Agent": user_agent})

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ScaleSetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- admin connection ----------------------------------------------------------------------

    def admin_connection(self, force: bool = False) -> AdminConnection:
        """The Actions service URL and a valid admin token, refreshed before it expires."""
        with self._lock:
            due = self._expires_at - ADMIN_TOKEN_MARGIN <= self._clock()
            if self._connection is None or due or force:
                token = self.github.create_registration_token(self.scope)
                connection = self.github.runner_registration(self.config_url, token)
                self._expires_at = token_expiry(connection.token)
                self._connection = connection
                logger.info("scale sets: admin connection to %s refreshed", connection.url)
            return self._connection

    # -- runner groups and scale sets ----------------------------------------------------------

    def runner_group(self, name: str) -> RunnerGroup:
        """The runner group called `name` (exactly one, else `LookupError`)."""
        body = self._request(
            "GET", "GET /_apis/runtime/runnergroups", "_apis/runtime/runnergroups/",
            {"groupName": name},
        )  # fmt: skip
        groups = body.get("value") or []
        if body.get("count") != 1 or len(groups) != 1:
            found = "no" if not groups else "several"
            raise LookupError(f"{found} runner group named {name!r} in {self.config_url}")
        group = groups[0]
        return RunnerGroup(int(group["id"]), str(group["name"]), bool(group.get("isDefaultGroup")))

    def get_scale_set(self, runner_group_id: int, name: str) -> ScaleSet | None:
        """The scale set `name` in a runner group, or None."""
        body = self._request(
            "GET",
            f"GET /{SCALE_SETS}",
            SCALE_SETS,
            {"runnerGroupId": runner_group_id, "name": name},
        )
        items = body.get("value") or []
        if body.get("count", len(items)) == 0 or not items:
            return None
        if len(items) > 1:
            raise ActionsServiceError(200, "GET", f"/{SCALE_SETS}", f"several scale sets {name!r}")
        return ScaleSet.from_api(items[0])

    def get_scale_set_by_id(self, scale_set_id: int) -> ScaleSet:
        """A scale set by id; `ScaleSetNotFound` when GitHub deleted it."""
        path = f"{SCALE_SETS}/{int(scale_set_id)}"
        return ScaleSet.from_api(self._request("GET", f"GET /{SCALE_SETS}/{{id}}", path))

    def create_scale_set(
        self, name: str, runner_group_id: int, labels: list[str], disable_update: bool = True
    ) -> ScaleSet:
        """Create a scale set (names are unique within a runner group)."""
        body = scale_set_body(name, runner_group_id, labels, disable_update)
        return ScaleSet.from_api(
            self._request("POST", f"POST /{SCALE_SETS}", SCALE_SETS, json=body)
        )

    def update_scale_set(
        self,
        scale_set_id: int,
        name: str,
        runner_group_id: int,
        labels: list[str],
        disable_update: bool = True,
    ) -> ScaleSet:
        """Replace a scale set's name, group, labels and settings."""
        body = scale_set_body(name, runner_group_id, labels, disable_update)
        path = f"{SCALE_SETS}/{int(scale_set_id)}"
        answer = self._request("PATCH", f"PATCH /{SCALE_SETS}/{{id}}", path, json=body)
        return ScaleSet.from_api(answer)

    def delete_scale_set(self, scale_set_id: int) -> None:
        """Delete a scale set (204)."""
        path = f"{SCALE_SETS}/{int(scale_set_id)}"
        self._request("DELETE", f"DELETE /{SCALE_SETS}/{{id}}", path)

    def ensure_scale_set(
        self, name: str, runner_group: str, labels: list[str], disable_update: bool = True
    ) -> ScaleSet:
        """Adopt the scale set `name` (updated when its group, labels or settings differ) or
        create it: what a pool does at start and whenever its spec changes."""
        group_id = self.runner_group(runner_group).id if runner_group else DEFAULT_RUNNER_GROUP_ID
        existing = self.get_scale_set(group_id, name)
        wanted = labels or [name]
        if existing is None:
            try:
                result = self.create_scale_set(name, group_id, wanted, disable_update)
            except ActionsServiceError as error:
                created = self.get_scale_set(group_id, name) if error.status == 409 else None
                if created is None:
                    raise
                result = created  # created meanwhile by another client: adopted
        elif existing.label_names != wanted or existing.disable_update != disable_update:
            result = self.update_scale_set(existing.id, name, group_id, wanted, disable_update)
        else:
            result = existing
        if result.label_names != wanted:
            # GHES before 3.18, or without DistributedTask.AllowRunnerScaleSetCustomLabels,
            # keeps the name as the only label and drops the others silently
            logger.warning(
                "scale set %s: GitHub kept the labels %s, not %s (custom labels need GitHub.com "
                "or GHES 3.18+ with custom labels enabled): jobs must use runs-on: %s",
                name, result.label_names, wanted, name,
            )  # fmt: skip
        return result

    # -- runners -------------------------------------------------------------------------------

    def generate_jit_config(
        self, scale_set_id: int, name: str, work_folder: str = "_work"
    ) -> ScaleSetJitConfig:
        """A JIT runner of the scale set. A name already taken by a runner of this scale set
        (a config lost before its runner started) is freed and asked again, as ARC does; a
        runner of another scale set with that name raises `RunnerExists`."""
        path = f"{SCALE_SETS}/{int(scale_set_id)}/generatejitconfig"
        endpoint = f"POST /{SCALE_SETS}/{{id}}/generatejitconfig"
        body = {"name": name, "workFolder": work_folder}
        try:
            answer = self._request("POST", endpoint, path, json=body)
        except RunnerExists:
            existing = self.runner_by_name(name)
            if existing is None or existing.runner_scale_set_id != scale_set_id:
                raise
            self.remove_runner(existing.id)
            answer = self._request("POST", endpoint, path, json=body)
        runner = answer.get("runner") or {}
        return ScaleSetJitConfig(
            RunnerReference(
                int(runner["id"]), str(runner["name"]), int(runner.get("runnerScaleSetId") or 0)
            ),
            str(answer["encodedJITConfig"]),
        )

    def runner_by_name(self, name: str) -> RunnerReference | None:
        """The runner called `name`, or None."""
        body = self._request("GET", f"GET /{RUNNERS}", RUNNERS, {"agentName": name})
        items = body.get("value") or []
        if not items:
            return None
        if len(items) > 1:
            raise ActionsServiceError(200, "GET", f"/{RUNNERS}", f"several runners named {name!r}")
        item = items[0]
        return RunnerReference(
            int(item["id"]), str(item["name"]), int(item.get("runnerScaleSetId") or 0)
        )

    def remove_runner(self, runner_id: int) -> None:
        """Deregister a runner (204)."""
        self._request("DELETE", f"DELETE /{RUNNERS}/{{id}}", f"{RUNNERS}/{int(runner_id)}")

    # -- plumbing ------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        endpoint: str,
        path: str,
        query: dict[str, Any] | None = None,
        *,
        json: Any = None,
        authorization: str | None = None,
    ) -> Any:
        """One call to the Actions service as admin (or with `authorization`, e.g. the
        queue token); a 401 on the admin token refreshes it once."""
        refreshed = False
        while True:
            connection = self.admin_connection()
            url = self.service_url(connection.url, path, query)
            auth = authorization or f"Bearer {connection.token}"
            response = self.send(method, endpoint, url, auth, json=json)
            if response.status_code == 401 and authorization is None and not refreshed:
                self.admin_connection(force=True)
                refreshed = True
                continue
            return self.answer(response, method, endpoint)

    @staticmethod
    def service_url(base: str, path: str, query: dict[str, Any] | None = None) -> str:
        """``{base}/{path}?{query}&api-version=6.0-preview``."""
        params = {**(query or {}), "api-version": API_VERSION}
        return f"{base.rstrip('/')}/{path.lstrip('/')}?{urlencode(params)}"

    def send(
        self,
        method: str,
        endpoint: str,
        url: str,
        authorization: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One logical request, retried on network errors and 5xx with backoff; each attempt
        of a mutating one fenced (it raises `fencing.LeaseLost`, which is not retried)."""
        mutating = method != "GET"
        if mutating:
            timeout = min(timeout or self.mutation_timeout, self.mutation_timeout)
        attempt = 0
        while True:
            if mutating:  # after any backoff: the lease is checked again
                fencing.check(endpoint, timeout or self.mutation_timeout)
            self.calls[endpoint] += 1
            try:
                response = self._http.request(
                    method,
                    url,
                    json=json,
                    headers={
                        "Content-Type": "application/json",
                        **(headers or {}),
                        "Authorization": authorization,
                    },
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as error:
                if attempt >= self.max_retries:
                    message = f"{type(error).__name__}: {error}"
                    raise ActionsServiceError(0, method, endpoint, message) from error
            else:
                if response.status_code < 500 or attempt >= self.max_retries:
                    return response
            wait = min(self._max_backoff, self._backoff * 2**attempt) * random.uniform(0.5, 1.0)
            logger.warning("%s: retrying in %.1fs", endpoint, wait)
            self._sleep(wait)
            attempt += 1

    @staticmethod
    def answer(response: httpx.Response, method: str, endpoint: str) -> Any:
        """The decoded body of a 2xx (None for 204), else the classified error."""
        if response.is_success:
            if response.status_code == 204 or not response.content:
                return None
            return response.json()
        type_name, message = "", response.text[:300] or response.reason_phrase
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            type_name = str(body.get("typeName") or "")
            message = str(body.get("message") or message)
        raise classify(response.status_code, method, endpoint, message, type_name)


__all__ = [
    "ActionsServiceError",
    "GitHubError",
    "Label",
    "RunnerGroup",
    "RunnerReference",
    "ScaleSet",
    "ScaleSetClient",
    "ScaleSetJitConfig",
    "config_url",
    "scale_set_body",
    "token_expiry",
]
