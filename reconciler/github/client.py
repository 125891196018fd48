"""A small synchronous client for the GitHub REST endpoints that manage self-hosted runners.

It retries 5xx answers and network errors with exponential backoff and jitter, honours
``Retry-After`` and primary rate limits (``x-ratelimit-remaining: 0`` -> wait for
``x-ratelimit-reset``, up to ``max_wait``; a rate-limited answer pauses every thread using the
client, not only the one that got it), never retries other 4xx, and sends conditional GETs
(``If-None-Match``) so unchanged lists cost no rate limit. Every HTTP request is counted in
``calls`` by endpoint template (``GET /orgs/{org}/actions/runners``); 304s also in
``not_modified``. Tokens and JIT configs are never logged.

Every attempt of a request that is not a GET passes `fencing.check` first, with its worst
case (`mutation_timeout`: pool + connect + write + read, 5 s by default), and is sent with
those short timeouts; a wait before a retry (backoff, ``Retry-After``) is followed by a new
check, so a replica that lost its lease while waiting sends nothing more.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from .. import fencing
from ..clock import WallClock, wall_time
from ..counting import CallCounter
from .auth import AppAuth, Auth, auth_from_environment
from .limits import BudgetExceeded, SecondaryLimits

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
# one attempt of a mutating request: pool wait, connect, send, answer (5 s in all)
MUTATION_TIMEOUT = httpx.Timeout(connect=1.0, read=2.5, write=1.0, pool=0.5)

ScopeKind = Literal["enterprise", "organization", "repository"]


class GitHubError(Exception):
    """GitHub answered with an error (``status`` 0 means no answer: a network error).

    ``endpoint`` is the path template, e.g. ``/orgs/{org}/actions/runners``.
    """

    def __init__(self, status: int, method: str, endpoint: str, message: str) -> None:
        super().__init__(status, method, endpoint, message)
        self.status = status
        self.method = method
        self.endpoint = endpoint
        self.message = message

    def __str__(self) -> str:
        what = f"HTTP {self.status}"
        if self.status == 0:  # no answer: a network error, or not sent (our own budget)
            what = "not sent" if isinstance(self, RateLimited) else "network error"
        return f"{self.method} {self.endpoint}: {what}: {self.message}"


class RateLimited(GitHubError):
    """Rate limited for longer than the client is willing to wait (``wait`` seconds)."""

    def __init__(self, status: int, method: str, endpoint: str, message: str, wait: float) -> None:
        super().__init__(status, method, endpoint, message)
        self.wait = wait


class RunnerBusy(GitHubError):
    """GitHub refused to delete a runner because it is running a job."""


class RunnerGroupNotFound(LookupError):
    """No runner group with that name in the scope."""


@dataclass(frozen=True)
class Scope:
    """Where runners are registered: an enterprise, an organization or a repository."""

    kind: ScopeKind
    name: str

    def __post_init__(self) -> None:
        parts = self.name.split("/")
        if self.kind == "repository" and (len(parts) != 2 or not all(parts)):
            raise ValueError(f"repository scope must be 'owner/repo', got {self.name!r}")
        if self.kind != "repository" and (len(parts) != 1 or not self.name):
            raise ValueError(f"invalid {self.kind} name {self.name!r}")

    @property
    def path(self) -> str:
        """API path prefix, e.g. ``/orgs/acme``."""
        if self.kind == "enterprise":
            return f"/enterprises/{quote(self.name, safe='')}"
        if self.kind == "organization":
            return f"/orgs/{quote(self.name, safe='')}"
        owner, repo = self.name.split("/")
        return f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"

    @property
    def template(self) -> str:
        """`path` with placeholders, for counting calls by endpoint."""
        return {
            "enterprise": "/enterprises/{enterprise}",
            "organization": "/orgs/{org}",
            "repository": "/repos/{owner}/{repo}",
        }[self.kind]


@dataclass(frozen=True)
class RunnerGroup:
    """An enterprise's or organization's runner group as GitHub lists it."""

    id: int
    name: str
    visibility: str  # all | selected | private (private repositories only)
    default: bool

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> RunnerGroup:
        """From a `runner_groups` item of the list endpoint."""
        return cls(
            int(data["id"]), str(data["name"]), str(data["visibility"]), bool(data["default"])
        )


@dataclass(frozen=True)
class Runner:
    """A self-hosted runner as GitHub reports it."""

    id: int
    name: str
    os: str
    status: str
    busy: bool
    labels: list[str]
    runner_group_id: int | None = None
    version: str | None = None  # what the runner reported when it connected (None before)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Runner:
        """Parse one element of ``runners``."""
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            os=str(data.get("os", "")),
            status=str(data["status"]),
            busy=bool(data["busy"]),
            labels=[str(label["name"]) for label in data.get("labels", [])],
            runner_group_id=data.get("runner_group_id"),
            version=str(data["version"]) if data.get("version") else None,
        )


@dataclass(frozen=True)
class Release:
    """A repository release as GitHub reports it (drafts have no ``published_at``)."""

    tag_name: str
    published_at: datetime.datetime | None
    draft: bool
    prerelease: bool

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Release:
        """Parse one element of the releases list."""
        published = data.get("published_at")
        return cls(
            tag_name=str(data["tag_name"]),
            published_at=datetime.datetime.fromisoformat(published) if published else None,
            draft=bool(data.get("draft", False)),
            prerelease=bool(data.get("prerelease", False)),
        )


@dataclass(frozen=True)
class JobStatus:
    """Where a workflow job stands (`GET /repos/{owner}/{repo}/actions/jobs/{job_id}`)."""

    job_id: int
    status: str  # queued | in_progress | completed | waiting | requested | pending
    conclusion: str | None
    runner_name: str | None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> JobStatus:
        return cls(
            int(data["id"]), str(data["status"]), data.get("conclusion"), data.get("runner_name")
        )


@dataclass(frozen=True)
class HookDelivery:
    """One attempt in a webhook's delivery log (`status_code` 0: no HTTP answer at all)."""

    id: int
    guid: str  # shared by every attempt of one event, redeliveries included
    delivered_at: datetime.datetime
    redelivery: bool
    status_code: int
    event: str
    action: str | None

    @property
    def succeeded(self) -> bool:
        """GitHub counts 2xx as delivered."""
        return 200 <= self.status_code < 300

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> HookDelivery:
        return cls(
            id=int(data["id"]),
            guid=str(data["guid"]),
            delivered_at=datetime.datetime.fromisoformat(str(data["delivered_at"])),
            redelivery=bool(data["redelivery"]),
            status_code=int(data["status_code"]),
            event=str(data["event"]),
            action=data.get("action"),
        )


_HOOK = re.compile(r"/app/hook|/orgs/[^/]+/hooks/\d+|/repos/[^/]+/[^/]+/hooks/\d+")


def hook_template(hook: str) -> str:
    """`/orgs/acme/hooks/12` -> `/orgs/{org}/hooks/{hook_id}` (for call counts); ValueError
    for anything but the App's hook, an organization's or a repository's."""
    if not _HOOK.fullmatch(hook):
        raise ValueError(
            f"not a webhook path: {hook!r} (use /app/hook, /orgs/ORG/hooks/ID or "
            "/repos/OWNER/REPO/hooks/ID)"
        )
    if hook == "/app/hook":
        return hook
    if hook.startswith("/orgs/"):
        return "/orgs/{org}/hooks/{hook_id}"
    return "/repos/{owner}/{repo}/hooks/{hook_id}"


@dataclass(frozen=True)
class JitConfig:
    """A just-in-time runner registration; ``encoded_jit_config`` is a secret."""

    runner_id: int
    encoded_jit_config: str = field(repr=False)


@dataclass(frozen=True)
class RegistrationToken:
    """A runner registration token (secret) and its expiry (epoch seconds, None if unsaid)."""

    token: str = field(repr=False)
    expires_at: float | None = None


@dataclass(frozen=True)
class AdminConnection:
    """The Actions service's base URL and an admin token for it (a JWT, secret)."""

    url: str
    token: str = field(repr=False)


@dataclass
class _Cached:
    etag: str
    body: Any
    next_url: str | None


class GitHubClient:
    """Runner management over the GitHub REST API (github.com or GitHub Enterprise Server)."""

    def __init__(
        self,
        api_url: str | None = None,
        auth: Auth | None = None,
        max_retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        *,
        max_wait: float = 300.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 10.0,
        clock: WallClock = wall_time,
        mutation_timeout: httpx.Timeout = MUTATION_TIMEOUT,
        limits: SecondaryLimits | None = None,
    ) -> None:
        """`limits`: GitHub's secondary limits kept on our side (default: the documented
        100 concurrent requests, no write budget; `run` adds its --github-write-budget)."""
        self.limits = limits if limits is not None else SecondaryLimits()
        self.api_url = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        self.auth = auth if auth is not None else auth_from_environment()
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.calls = CallCounter()
        self.not_modified = CallCounter()
        self.mutation_timeout = mutation_timeout
        self.mutation_budget = sum(
            part or 0.0
            for part in (
                mutation_timeout.pool,
                mutation_timeout.connect,
                mutation_timeout.write,
                mutation_timeout.read,
            )
        )
        self._sleep = sleep
        self._clock = clock
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._etags: dict[str, _Cached] = {}
        # GitHub asked to wait (a rate limit): no request of any thread before this
        # (time.monotonic()); several threads may send at once (the executor's bind workers)
        self._pause_lock = threading.Lock()
        self._paused_until = 0.0
        self._local = threading.local()
        self._http = httpx.Client(
            timeout=timeout,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "ecs-runner-reconciler",
            },
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runners -------------------------------------------------------------------------------

    def list_runners(self, scope: Scope) -> list[Runner]:
        """All self-hosted runners registered in `scope`."""
        items = self._paginate(
            f"GET {scope.template}/actions/runners", f"{scope.path}/actions/runners", "runners"
        )
        return [Runner.from_api(item) for item in items]

    def runner_group_id(self, scope: Scope, name: str) -> int:
        """Id of the runner group called `name` (repositories only have "Default", id 1)."""
        if scope.kind == "repository":
            if name == "Default":
                return 1
            raise RunnerGroupNotFound(f"repositories have no runner group {name!r}, only Default")
        return self.runner_group(scope, name).id

    def runner_group(self, scope: Scope, name: str) -> RunnerGroup:
        """The enterprise's or organization's runner group called `name`."""
        groups = self._paginate(
            f"GET {scope.template}/actions/runner-groups",
            f"{scope.path}/actions/runner-groups",
            "runner_groups",
        )
        for group in groups:
            if group["name"] == name:
                return RunnerGroup.from_api(group)
        raise RunnerGroupNotFound(f"no runner group {name!r} in {scope.kind} {scope.name}")

    def runner_group_members(self, scope: Scope, group_id: int) -> list[str]:
        """Who a group of visibility `selected` admits: an organization's group, its
        repositories (`full_name`); an enterprise's group, its organizations (`login`)."""
        if scope.kind == "organization":
            key, field_name = "repositories", "full_name"
        elif scope.kind == "enterprise":
            key, field_name = "organizations", "login"
        else:
            raise ValueError("repositories have no runner groups to list members of")
        items = self._paginate(
            f"GET {scope.template}/actions/runner-groups/{{runner_group_id}}/{key}",
            f"{scope.path}/actions/runner-groups/{group_id}/{key}",
            key,
        )
        return [str(item[field_name]) for item in items]

    def create_jit_config(
        self,
        scope: Scope,
        name: str,
        runner_group_id: int,
        labels: list[str],
        work_folder: str = "_work",
    ) -> JitConfig:
        """Register a just-in-time runner and return its (secret) configuration."""
        body = self._json(
            "POST",
            f"POST {scope.template}/actions/runners/generate-jitconfig",
            f"{self.api_url}{scope.path}/actions/runners/generate-jitconfig",
            {
                "name": name,
                "runner_group_id": runner_group_id,
                "labels": labels,
                "work_folder": work_folder,
            },
        )
        return JitConfig(int(body["runner"]["id"]), str(body["encoded_jit_config"]))

    def delete_runner(self, scope: Scope, runner_id: int) -> bool:
        """Remove a runner; True when deleted or already gone, `RunnerBusy` if it runs a job."""
        endpoint = f"DELETE {scope.template}/actions/runners/{{runner_id}}"
        url = f"{self.api_url}{scope.path}/actions/runners/{int(runner_id)}"
        response = self._send("DELETE", endpoint, url)
        if response.status_code == 404:
            return True
        if response.status_code == 422:
            raise RunnerBusy(422, "DELETE", _template(endpoint), _message(response))
        self._check(response, endpoint)
        return True

    # -- runner scale sets: the way into the Actions service ---------------------------------

    def create_registration_token(self, scope: Scope) -> RegistrationToken:
        """``POST {scope}/actions/runners/registration-token`` (201): a one-hour token that
        `runner_registration` exchanges for the Actions service's URL and admin token."""
        endpoint = f"POST {scope.template}/actions/runners/registration-token"
        url = f"{self.api_url}{scope.path}/actions/runners/registration-token"
        body = self._json("POST", endpoint, url, None)
        expires = body.get("expires_at")
        return RegistrationToken(
            str(body["token"]),
            datetime.datetime.fromisoformat(expires).timestamp() if expires else None,
        )

    def runner_registration(self, config_url: str, token: RegistrationToken) -> AdminConnection:
        """``POST {api}/actions/runner-registration`` with ``Authorization: RemoteAuth <token>``
        and ``{"url": config_url, "runner_event": "register"}``: the Actions service's URL
        and an admin token (a JWT). Not counted against the REST rate limit by GitHub, but
        counted in `calls` like every request.

        A 401/403 right after the token was made is retried (the token propagates), as
        actions/scaleset does; other errors raise `GitHubError`.
        """
        endpoint = "POST /actions/runner-registration"
        url = f"{self.api_url}/actions/runner-registration"
        attempt = 0
        while True:
            response = self._send(
                "POST",
                endpoint,
                url,
                json={"url": config_url, "runner_event": "register"},
                authorization=f"RemoteAuth {token.token}",
            )
            if response.status_code in (401, 403) and attempt < self.max_retries:
                self._sleep(self._backoff_delay(attempt))
                attempt += 1
                continue
            self._check(response, endpoint)
            body = response.json()
            service_url, admin_token = body.get("url"), body.get("token")
            if not service_url or not admin_token:
                raise GitHubError(
                    response.status_code, "POST", _template(endpoint), "answer lacks url or token"
                )
            return AdminConnection(str(service_url), str(admin_token))

    # -- releases ------------------------------------------------------------------------------

    def list_releases(self, repository: str) -> list[Release]:
        """The newest 100 releases of `repository` (``owner/repo``), newest first.

        One conditional request: an unchanged list costs a 304. Older pages are not read.
        """
        owner, _, repo = repository.partition("/")
        path = f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/releases"
        url = f"{self.api_url}{path}?per_page=100"
        body, _ = self._get("GET /repos/{owner}/{repo}/releases", url)
        return [Release.from_api(item) for item in body]

    # -- workflow jobs ---------------------------------------------------------------------------

    def job_status(self, repository: str, job_id: int) -> JobStatus | None:
        """A workflow job's status as GitHub shows it now; None when GitHub does not know it
        (deleted, or a repository these credentials cannot read)."""
        owner, _, repo = repository.partition("/")
        endpoint = "GET /repos/{owner}/{repo}/actions/jobs/{job_id}"
        url = (
            f"{self.api_url}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"
            f"/actions/jobs/{int(job_id)}"
        )
        response = self._send("GET", endpoint, url)
        if response.status_code == 404:
            return None
        self._check(response, endpoint)
        return JobStatus.from_api(response.json())

    # -- webhook deliveries --------------------------------------------------------------------

    def hook_deliveries(
        self, hook: str, stop: Callable[[HookDelivery], bool] | None = None
    ) -> list[HookDelivery]:
        """The delivery log of `hook` (see `hook_template`), newest first, 100 a page, until
        the first delivery `stop` accepts (excluded) or the end of the log. The App's hook is
        read as the App (JWT), others with the usual credentials."""
        template = hook_template(hook)
        endpoint = f"GET {template}/deliveries"
        url: str | None = f"{self.api_url}{hook}/deliveries?per_page=100"
        deliveries: list[HookDelivery] = []
        while url is not None:
            response = self._send("GET", endpoint, url, authorization=self._hook_auth(hook))
            self._check(response, endpoint)
            for item in response.json():
                delivery = HookDelivery.from_api(item)
                if stop is not None and stop(delivery):
                    return deliveries
                deliveries.append(delivery)
            url = response.links.get("next", {}).get("url")
            if url is not None and not url.startswith(self.api_url + "/"):
                message = "pagination link leaves the API URL"
                raise GitHubError(0, "GET", _template(endpoint), message)
        return deliveries

    def redeliver(self, hook: str, delivery_id: int) -> None:
        """Ask GitHub to attempt a logged delivery again (202; it is sent in the background)."""
        endpoint = f"POST {hook_template(hook)}/deliveries/{{delivery_id}}/attempts"
        url = f"{self.api_url}{hook}/deliveries/{int(delivery_id)}/attempts"
        response = self._send("POST", endpoint, url, authorization=self._hook_auth(hook))
        self._check(response, endpoint)

    def _hook_auth(self, hook: str) -> str | None:
        if hook != "/app/hook":
            return None
        if not isinstance(self.auth, AppAuth):
            raise GitHubError(
                0, "GET", "/app/hook/deliveries", "the App's webhook needs GitHub App credentials"
            )
        return self.auth.app_authorization()

    # -- plumbing ------------------------------------------------------------------------------

    def _paginate(self, endpoint: str, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        url: str | None = f"{self.api_url}{path}?per_page=100"
        while url is not None:
            body, url = self._get(endpoint, url)
            items.extend(body[key])
            if url is not None and not url.startswith(self.api_url + "/"):
                raise GitHubError(
                    0, "GET", _template(endpoint), "pagination link leaves the API URL"
                )
        return items

    def _get(self, endpoint: str, url: str) -> tuple[Any, str | None]:
        """GET with ETag revalidation: ``(body, next page URL)``."""
        cached = self._etags.get(url)
        headers = {"If-None-Match": cached.etag} if cached else {}
        response = self._send("GET", endpoint, url, headers=headers)
        if response.status_code == 304 and cached is not None:
            self.not_modified.add(endpoint)
            return cached.body, cached.next_url
        self._check(response, endpoint)
        body = response.json()
        next_url = response.links.get("next", {}).get("url")
        etag = response.headers.get("ETag")
        if etag:
            self._etags[url] = _Cached(etag, body, next_url)
        return body, next_url

    def _json(self, method: str, endpoint: str, url: str, payload: Any) -> Any:
        response = self._send(method, endpoint, url, json=payload)
        self._check(response, endpoint)
        return response.json()

    def _app_post(self, endpoint: str, path: str, jwt: str) -> Any:
        """POST as the App itself (JWT), used by `AppAuth` to get installation tokens."""
        response = self._send(
            "POST", endpoint, f"{self.api_url}{path}", authorization=f"Bearer {jwt}"
        )
        self._check(response, endpoint)
        return response.json()

    def _check(self, response: httpx.Response, endpoint: str) -> None:
        if response.is_error:
            raise GitHubError(
                response.status_code,
                response.request.method,
                _template(endpoint),
                _message(response),
            )

    def _send(
        self,
        method: str,
        endpoint: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        authorization: str | None = None,
    ) -> httpx.Response:
        """One logical request, retried on 5xx, network errors and rate limits."""
        attempt = 0
        mutating = method != "GET"
        while True:
            self._wait_out_pause()
            auth_header = authorization or self.auth.authorization(self._app_post)
            try:
                # a POST creates content: it waits for a place in the write budget first
                slot = self.limits.slot(writes=method == "POST", max_wait=self.max_wait)
                with slot:
                    if mutating:  # after any wait for the budget: the lease is checked now
                        fencing.check(endpoint, self.mutation_budget)
                    self.calls.add(endpoint)
                    response = self._http.request(
                        method,
                        url,
                        headers={**(headers or {}), "Authorization": auth_header},
                        json=json,
                        timeout=self.mutation_timeout if mutating else httpx.USE_CLIENT_DEFAULT,
                    )
            except BudgetExceeded as exc:
                raise RateLimited(0, method, _template(endpoint), str(exc), exc.wait) from exc
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise GitHubError(
                        0, method, _template(endpoint), f"{type(exc).__name__}: {exc}"
                    ) from exc
                wait = self._backoff_delay(attempt)
                logger.warning("%s: %s, retrying in %.1fs", endpoint, type(exc).__name__, wait)
            else:
                wait_or_none = self._retry_wait(response, method, endpoint, attempt)
                if wait_or_none is None:
                    return response
                wait = wait_or_none
                logger.warning(
                    "%s: HTTP %d, retrying in %.1fs", endpoint, response.status_code, wait
                )
                if response.status_code in (403, 429):  # rate limited: every thread waits
                    self._local.waited_until = self._pause(wait)
            self._sleep(wait)
            attempt += 1

    def _retry_wait(
        self, response: httpx.Response, method: str, endpoint: str, attempt: int
    ) -> float | None:
        """Seconds to wait before retrying `response`, or None to return it as is."""
        status = response.status_code
        rate_limited = status in (403, 429)
        retry_after = response.headers.get("Retry-After")
        if rate_limited and response.headers.get("x-ratelimit-remaining") == "0":
            reset = float(response.headers.get("x-ratelimit-reset", "0"))
            wait = max(0.0, reset - self._clock()) + 1.0
        elif (rate_limited or status >= 500) and retry_after is not None:
            wait = float(retry_after) if retry_after.isdigit() else self._backoff_delay(attempt)
        elif status >= 500:
            wait = self._backoff_delay(attempt)
        else:
            return None
        if wait > self.max_wait:
            message = (
                f"{_message(response)} (would wait {wait:.0f}s > max_wait {self.max_wait:.0f}s)"
            )
            raise RateLimited(status, method, _template(endpoint), message, wait)
        if attempt >= self.max_retries:
            if rate_limited:
                raise RateLimited(status, method, _template(endpoint), _message(response), wait)
            raise GitHubError(status, method, _template(endpoint), _message(response))
        return wait

    def _pause(self, seconds: float) -> float:
        """GitHub asked to wait: no thread sends before `seconds` from now (returned, as
        time.monotonic())."""
        with self._pause_lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
            return self._paused_until

    def _wait_out_pause(self) -> None:
        """Before any request: wait out a pause another thread was told to take (GitHub:
        stop making requests until the secondary limit's Retry-After has passed). A thread
        waits out each pause once (the one told to wait already did)."""
        until = self._paused_until
        if until <= getattr(self._local, "waited_until", 0.0):
            return
        left = until - time.monotonic()
        if left > 0:
            logger.info("GitHub asked to wait: pausing %.1fs before the next request", left)
            self._sleep(left)
        self._local.waited_until = until

    def _backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^attempt, scaled by a random 50-100%."""
        return min(self._max_backoff, self._backoff * 2**attempt) * random.uniform(0.5, 1.0)


def _template(endpoint: str) -> str:
    """``"GET /orgs/{org}/..."`` -> ``"/orgs/{org}/..."``."""
    return endpoint.partition(" ")[2]


def _message(response: httpx.Response) -> str:
    """GitHub's ``message`` field, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:200]
