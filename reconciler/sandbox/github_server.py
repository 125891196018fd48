"""A GitHub-compatible HTTP server, in memory, for testing the GitHub client over real sockets.

`FakeGitHub` serves exactly the endpoints `reconciler.github.client` calls, with GitHub's
response shapes, on 127.0.0.1 at a port the OS picks, from a daemon thread::

    GET    {scope}/actions/runners                      paginated, ETag / 304
    POST   {scope}/actions/runners/generate-jitconfig   201, registers the runner offline
    DELETE {scope}/actions/runners/{runner_id}          204; 404 unknown; 422 busy
    GET    {scope}/actions/runner-groups                paginated, ETag / 304 (not repos)
    POST   /app/installations/{id}/access_tokens        JWT (RS256) -> installation token
    GET    {hook}/deliveries[/{id}], POST {hook}/deliveries/{id}/attempts   (see `hooks`)
    GET    /repos/{owner}/{repo}/releases               newest first, paginated, ETag / 304
    GET    /repos/{owner}/{repo}/actions/jobs/{job_id}  the jobs `set_job` recorded

``{scope}`` is ``/enterprises/{e}``, ``/orgs/{o}`` or ``/repos/{owner}/{repo}``; every scope
exists and has a "Default" runner group with id 1. An optional ``prefix`` (``/api/v3``) makes
it look like GitHub Enterprise Server. Requests need a configured token or an unexpired
installation token (401 otherwise). Faults can be queued for the next requests.

Response bodies carry every field GitHub's published description marks required (objects
built in `payloads`); every request and answer is kept in `exchanges`, which
tests/test_github_conformance.py validates against the pinned descriptions.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import re
import secrets
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..clock import WallClock, wall_time
from . import payloads
from .actions_service import ActionsService
from .hooks import DELIVERY_TIMEOUT, HookDeliveries

logger = logging.getLogger(__name__)

_SCOPE = r"(?P<scope>/enterprises/[^/]+|/orgs/[^/]+|/repos/[^/]+/[^/]+)"
_RUNNERS = re.compile(_SCOPE + r"/actions/runners")
_JIT = re.compile(_SCOPE + r"/actions/runners/generate-jitconfig")
_RUNNER = re.compile(_SCOPE + r"/actions/runners/(?P<id>\d+)")
_GROUPS = re.compile(r"(?P<scope>/enterprises/[^/]+|/orgs/[^/]+)/actions/runner-groups")
_GROUP_MEMBERS = re.compile(
    r"(?P<scope>/enterprises/[^/]+|/orgs/[^/]+)/actions/runner-groups/(?P<id>\d+)"
    r"/(?P<kind>repositories|organizations)"
)
_RELEASES = re.compile(r"/repos/(?P<repository>[^/]+/[^/]+)/releases")
_JOB = re.compile(r"/repos/(?P<repository>[^/]+/[^/]+)/actions/jobs/(?P<id>\d+)")
_REGISTRATION_TOKEN = re.compile(_SCOPE + r"/actions/runners/registration-token")
_ACCESS_TOKENS = re.compile(r"/app/installations/(?P<id>\d+)/access_tokens")
_HOOK_DELIVERIES = re.compile(
    r"(?P<hook>/app/hook|/orgs/[^/]+/hooks/\d+|/repos/[^/]+/[^/]+/hooks/\d+)/deliveries"
    r"(?:/(?P<id>\d+)(?P<attempts>/attempts)?)?"
)

_DOCS = "https://docs.github.com/rest"


@dataclass
class _Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Exchange:
    """One request to the simulated GitHub and its answer (path without the prefix)."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    status: int
    response: Any


@dataclass
class _App:
    app_id: str
    public_key: rsa.RSAPublicKey
    installation_id: int


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, {"message": message, "documentation_url": _DOCS}, headers or {})


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeGitHub:
    """In-memory GitHub runner API over HTTP; all state is guarded by one lock."""

    def __init__(
        self,
        tokens: Iterable[str] = ("test-token",),
        *,
        prefix: str = "",
        token_lifetime: float = 3600.0,
        clock: WallClock = wall_time,
        delivery_timeout: float = DELIVERY_TIMEOUT,
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.token_lifetime = token_lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = set(tokens)
        self._installation_tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self._app: _App | None = None
        self._runners: dict[str, dict[int, dict[str, Any]]] = {}
        self._groups: dict[str, list[dict[str, Any]]] = {}
        self._group_members: dict[tuple[str, int], list[str]] = {}  # a selected group's
        self._releases: dict[str, list[dict[str, Any]]] = {}
        self._jobs: dict[tuple[str, int], dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._group_ids = itertools.count(2)
        self._faults: deque[_Response] = deque()
        self._method_faults: dict[str, deque[_Response]] = {}
        self._log: list[tuple[str, str]] = []
        self._exchanges: list[Exchange] = []
        self.hooks = HookDeliveries(clock=clock, timeout=delivery_timeout)
        self._registration_tokens: dict[str, tuple[str, float]] = {}  # token -> (scope, expiry)
        #: The Actions service behind runner scale sets (started and closed with this server).
        self.actions = ActionsService(clock=clock)
        self.actions.on_runner_registered = self._scale_set_runner_registered
        self.actions.on_runner_removed = self.remove_runner
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on 127.0.0.1 at an OS-chosen port and serve from a daemon thread."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-github", daemon=True
        )
        self._thread.start()
        self.actions.start()
        return self

    @property
    def url(self) -> str:
        """Base API URL (including the prefix), to use as the client's ``api_url``."""
        if self._server is None:
            raise RuntimeError("FakeGitHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.prefix}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self.hooks.close()
        self.actions.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- configuration and inspection ---------------------------------------------------------

    def configure_app(self, app_id: str | int, public_key_pem: bytes, installation_id: int) -> None:
        """Accept App JWTs for `app_id` signed by the key matching `public_key_pem`."""
        key = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("App public key must be RSA")
        with self._lock:
            self._app = _App(str(app_id), key, installation_id)

    def add_runner_group(self, scope_path: str, name: str) -> int:
        """Create a runner group in an enterprise or organization; returns its id."""
        with self._lock:
            group_id = next(self._group_ids)
            self._groups_of(scope_path).append(
                {"id": group_id, "name": name, "visibility": "all", "default": False}
            )
            return group_id

    def set_runner_group_access(
        self, scope_path: str, name: str, members: Iterable[str] | None
    ) -> int:
        """Restrict a group (created if missing) to selected repositories (`owner/name`, an
        organization's group) or organizations (an enterprise's group), or open it to all
        of the scope again (None): visibility `selected` or `all`, as the REST API sets it
        (`PATCH .../runner-groups/{id}` + `PUT .../repositories`). Returns the group id."""
        group_id = self.ensure_runner_group(scope_path, name)
        with self._lock:
            group = next(g for g in self._groups_of(scope_path) if g["id"] == group_id)
            group["visibility"] = "all" if members is None else "selected"
            self._group_members[(scope_path, group_id)] = sorted(members or ())
        return group_id

    def runner_group_admits(
        self, scope_path: str, group_id: int, repository: str, organization: str
    ) -> bool:
        """Whether GitHub hands a runner of the group a job of `repository`: a `selected`
        group only to its repositories (organizations, for an enterprise's group)."""
        if scope_path.startswith("/repos/"):
            return True
        with self._lock:
            group = next((g for g in self._groups_of(scope_path) if g["id"] == group_id), None)
            if group is None or group["visibility"] != "selected":
                return True
            members = {m.lower() for m in self._group_members.get((scope_path, group_id), ())}
        wanted = organization if scope_path.startswith("/enterprises/") else repository
        return wanted.lower() in members

    def ensure_runner_group(self, scope_path: str, name: str) -> int:
        """The id of the runner group `name`, created if missing."""
        with self._lock:
            for group in self._groups_of(scope_path):
                if group["name"] == name:
                    return int(group["id"])
        return self.add_runner_group(scope_path, name)

    def add_runner(
        self,
        scope_path: str,
        name: str,
        labels: Iterable[str] = ("self-hosted", "linux"),
        *,
        status: str = "online",
        busy: bool = False,
        runner_group_id: int = 1,
        version: str | None = None,
    ) -> int:
        """Register a runner directly (as ``config.sh`` would); returns its id."""
        with self._lock:
            labels = list(labels)
            runner_id = self._register(scope_path, name, labels, status, busy, runner_group_id)
            self._runners[scope_path][runner_id]["version"] = version
            return runner_id

    def add_hook(
        self,
        url: str,
        secret: bytes,
        *,
        owner: str | None = None,
        content_type: str = "json",
        installation_id: int | None = None,
    ) -> str:
        """Configure a webhook (the App's when `owner` is None, else `/orgs/x` or `/repos/o/r`);
        returns its path, for `send_webhook` and the deliveries API."""
        return self.hooks.add(
            url, secret, owner=owner, content_type=content_type, installation_id=installation_id
        )

    def send_webhook(self, hook: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Deliver an event through a hook, once, as GitHub does (no retry on failure)."""
        return self.hooks.send(hook, event, payload)

    def set_job(self, repository: str, job: dict[str, Any]) -> None:
        """Record a workflow job's current state (the `workflow_job` object of its webhooks),
        served by `GET /repos/{owner}/{repo}/actions/jobs/{job_id}`."""
        with self._lock:
            self._jobs[(repository, int(job["id"]))] = json.loads(json.dumps(job))

    def runner_group_name(self, scope_path: str, group_id: int) -> str:
        """The name of a runner group (repositories have only "Default", id 1)."""
        with self._lock:
            groups = self._groups_of(scope_path) if not scope_path.startswith("/repos/") else []
            return next((g["name"] for g in groups if g["id"] == group_id), "Default")

    def set_runner_status(
        self, scope_path: str, name: str, status: str, busy: bool, version: str | None = None
    ) -> None:
        """Set a runner's ``status`` ("online"/"offline") and ``busy`` flag, by name; a runner
        that connects reports its ``version`` (None keeps the one known)."""
        with self._lock:
            for runner in self._runners.get(scope_path, {}).values():
                if runner["name"] == name:
                    runner["status"], runner["busy"] = status, busy
                    if version is not None:
                        runner["version"] = version
                    return
        raise KeyError(f"no runner {name!r} in {scope_path}")

    def remove_runner(self, scope_path: str, name: str) -> None:
        """Remove a runner by name (GitHub does this to an ephemeral runner after its job)."""
        with self._lock:
            runners = self._runners.get(scope_path, {})
            for runner_id, runner in list(runners.items()):
                if runner["name"] == name:
                    del runners[runner_id]

    def add_release(
        self,
        repository: str,
        tag_name: str,
        published_at: datetime,
        *,
        prerelease: bool = False,
        draft: bool = False,
    ) -> None:
        """Publish a release of `repository` (``owner/repo``); drafts get no publish time."""
        published = published_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            releases = self._releases.setdefault(repository, [])
            releases.append(
                {
                    "id": next(self._ids),
                    "tag_name": tag_name,
                    "draft": draft,
                    "prerelease": prerelease,
                    "created_at": published,
                    "published_at": None if draft else published,
                }
            )
            releases.sort(key=lambda release: release["created_at"], reverse=True)

    def runners(self, scope_path: str) -> list[dict[str, Any]]:
        """Copies of the runners registered in a scope, in GitHub's JSON shape."""
        with self._lock:
            return [json.loads(json.dumps(r)) for r in self._runners.get(scope_path, {}).values()]

    @property
    def request_log(self) -> list[tuple[str, str]]:
        """Every request received, as ``(method, path)`` without prefix or query."""
        with self._lock:
            return list(self._log)

    # -- fault injection ----------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 502, method: str | None = None) -> None:
        """Answer the next `n` requests (of `method` only, when given) with `status`."""
        faults = [_error(status, HTTPStatus(status).phrase) for _ in range(n)]
        with self._lock:
            if method is None:
                self._faults.extend(faults)
            else:
                self._method_faults.setdefault(method, deque()).extend(faults)

    def rate_limit_next(self, reset_in_seconds: float) -> None:
        """Answer the next request as an exhausted primary rate limit (403)."""
        reset = int(self._clock() + reset_in_seconds)
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(reset),
        }
        with self._lock:
            self._faults.append(_error(403, "API rate limit exceeded", headers))

    def retry_after_next(self, seconds: int, status: int = 403) -> None:
        """Answer the next request as a secondary rate limit with ``Retry-After``."""
        message = "You have exceeded a secondary rate limit. Please wait a few minutes."
        with self._lock:
            self._faults.append(_error(status, message, {"Retry-After": str(seconds)}))

    # -- request handling (called from server threads) ----------------------------------------

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request received and the response given, in order (for conformance checks)."""
        with self._lock:
            return list(self._exchanges)

    def handle(self, method: str, target: str, headers: Any, body: bytes, host: str) -> _Response:
        """Route one request and record the exchange; `target` is the raw request target."""
        response = self._route(method, target, headers, body, host)
        path = unquote(urlsplit(target).path)
        query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
        exchange = Exchange(
            method,
            path.removeprefix(self.prefix) if self.prefix else path,
            query,
            body,
            response.status,
            json.loads(json.dumps(response.body)),
        )
        with self._lock:
            self._exchanges.append(exchange)
        return response

    def _route(self, method: str, target: str, headers: Any, body: bytes, host: str) -> _Response:
        split = urlsplit(target)
        path = unquote(split.path)
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return _error(404, "Not Found")
            path = path[len(self.prefix) :]
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        authorization = headers.get("Authorization", "")
        with self._lock:
            self._log.append((method, path))
            if self._faults:
                return self._faults.popleft()
            if self._method_faults.get(method):
                return self._method_faults[method].popleft()
            if match := _ACCESS_TOKENS.fullmatch(path):
                if method != "POST":
                    return _error(404, "Not Found")
                return self._access_token(int(match["id"]), authorization)
            base = f"http://{host}{self.prefix}"
            if match := _HOOK_DELIVERIES.fullmatch(path):
                return self._hook_deliveries(method, match, query, authorization, base)
            if method == "POST" and path == "/actions/runner-registration":
                return self._runner_registration(authorization, body, host)
            if not self._authorized(authorization):
                return _error(401, "Bad credentials")
            if method == "GET" and (match := _RUNNERS.fullmatch(path)):
                items = list(self._runners.get(match["scope"], {}).values())
                return self._page(base + path, query, "runners", items, headers)
            if method == "GET" and (match := _GROUPS.fullmatch(path)):
                scope_url = base + match["scope"]
                groups = [_group(scope_url, group) for group in self._groups_of(match["scope"])]
                return self._page(base + path, query, "runner_groups", groups, headers)
            if method == "GET" and (match := _GROUP_MEMBERS.fullmatch(path)):
                return self._group_members_page(match, base + path, query, headers)
            if method == "GET" and (match := _RELEASES.fullmatch(path)):
                web = f"http://{host}"
                releases = [
                    payloads.release(
                        match["repository"],
                        r["id"],
                        r["tag_name"],
                        r["created_at"],
                        r["published_at"],
                        draft=r["draft"],
                        prerelease=r["prerelease"],
                        api=base,
                        web=web,
                    )
                    for r in self._releases.get(match["repository"], [])
                ]
                return self._page(base + path, query, None, releases, headers)
            if method == "GET" and (match := _JOB.fullmatch(path)):
                job = self._jobs.get((match["repository"], int(match["id"])))
                return _Response(200, job) if job is not None else _error(404, "Not Found")
            if method == "POST" and (match := _JIT.fullmatch(path)):
                return self._jit(match["scope"], body)
            if method == "POST" and (match := _REGISTRATION_TOKEN.fullmatch(path)):
                return self._registration_token(match["scope"])
            if method == "DELETE" and (match := _RUNNER.fullmatch(path)):
                return self._delete(match["scope"], int(match["id"]))
        return _error(404, "Not Found")

    def _hook_deliveries(
        self,
        method: str,
        match: re.Match[str],
        query: dict[str, str],
        authorization: str,
        base: str,
    ) -> _Response:
        """A hook's delivery log and redelivery; the App's hook takes only the App's JWT."""
        hook = match["hook"]
        if hook == "/app/hook":
            scheme, _, jwt = authorization.partition(" ")
            app = self._app
            if app is None or scheme.lower() != "bearer" or not self._valid_jwt(app, jwt):
                return _error(401, "A JSON web token could not be decoded")
        elif not self._authorized(authorization):
            return _error(401, "Bad credentials")
        if self.hooks.hook(hook) is None:
            return _error(404, "Not Found")
        if match["id"] is None:
            if method != "GET":
                return _error(404, "Not Found")
            try:
                page, cursor = self.hooks.listed(hook, query)
            except ValueError as error:
                return _error(422, f"Validation Failed: {error}")
            headers = {}
            if cursor is not None:
                per_page = max(1, min(100, int(query.get("per_page", 30))))
                extra = f"&status={query['status']}" if "status" in query else ""
                url = f"{base}{hook}/deliveries?per_page={per_page}&cursor={cursor}{extra}"
                headers["Link"] = f'<{url}>; rel="next"'
            return _Response(200, page, headers)
        delivery_id = int(match["id"])
        if match["attempts"]:
            if method != "POST" or not self.hooks.redeliver(hook, delivery_id):
                return _error(404, "Not Found")
            return _Response(202, {})
        delivery = self.hooks.delivery(hook, delivery_id) if method == "GET" else None
        return _Response(200, delivery) if delivery is not None else _error(404, "Not Found")

    def _scale_set_runner_registered(
        self, scope_path: str, name: str, labels: list[str], group_id: int
    ) -> None:
        """A scale set's JIT runner shows in the scope's REST runner list, offline until it
        connects (scale-set runners are listed there on GitHub too)."""
        with self._lock:
            self._register(scope_path, name, labels, "offline", False, group_id)

    def _registration_token(self, scope_path: str) -> _Response:
        """A runner registration token for the scope: 201, valid one hour."""
        token = secrets.token_hex(15).upper()
        expires = self._clock() + 3600
        self._registration_tokens[token] = (scope_path, expires)
        expires_at = datetime.fromtimestamp(int(expires), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _Response(201, {"token": token, "expires_at": expires_at})

    def _runner_registration(self, authorization: str, raw: bytes, host: str) -> _Response:
        """``RemoteAuth <registration token>`` + ``{url, runner_event}`` -> the Actions
        service's URL and an admin token bound to the token's scope. The config URL must
        name that scope on this server's web host."""
        scheme, _, token = authorization.partition(" ")
        entry = self._registration_tokens.get(token) if scheme == "RemoteAuth" else None
        if entry is None or entry[1] <= self._clock():
            return _error(401, "Bad credentials")
        try:
            request = json.loads(raw)
            url, event = str(request["url"]), str(request["runner_event"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "Problems parsing JSON")
        scope_path = entry[0]
        parts = urlsplit(url)
        named = parts.path.rstrip("/")
        expected = scope_path.removeprefix("/orgs").removeprefix("/repos")
        if event != "register" or parts.netloc != host or named != expected:
            return _error(404, "Not Found")
        groups = [] if scope_path.startswith("/repos/") else self._groups_of(scope_path)
        self.actions.set_runner_groups(
            scope_path, [(1, "Default")] + [(g["id"], g["name"]) for g in groups if g["id"] != 1]
        )
        answer = {**self.actions.admin_connection(scope_path), "token_schema": "OAuthAccessToken"}
        return _Response(200, answer)

    def _authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return False
        if token in self._tokens:
            return True
        expiry = self._installation_tokens.get(token)
        return expiry is not None and expiry > self._clock()

    def _access_token(self, installation_id: int, authorization: str) -> _Response:
        scheme, _, jwt = authorization.partition(" ")
        app = self._app
        if app is None or scheme.lower() != "bearer" or not self._valid_jwt(app, jwt):
            return _error(401, "A JSON web token could not be decoded")
        if installation_id != app.installation_id:
            return _error(404, "Not Found")
        token = "ghs_" + secrets.token_hex(18)
        expires = self._clock() + self.token_lifetime
        self._installation_tokens[token] = expires
        expires_at = datetime.fromtimestamp(int(expires), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _Response(201, {"token": token, "expires_at": expires_at, "permissions": {}})

    def _valid_jwt(self, app: _App, jwt: str) -> bool:
        """RS256 signature by the App's key, ``iss`` is the App, and valid now."""
        try:
            header_b64, claims_b64, signature_b64 = jwt.split(".")
            header = json.loads(_b64url_decode(header_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            app.public_key.verify(
                _b64url_decode(signature_b64),
                f"{header_b64}.{claims_b64}".encode("ascii"),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            return False
        now = self._clock()
        return (
            header.get("alg") == "RS256"
            and str(claims.get("iss")) == app.app_id
            and claims.get("iat", now + 1) <= now
            and claims.get("exp", 0) > now
            and claims["exp"] - claims["iat"] <= 600
        )

    def _page(
        self, url: str, query: dict[str, str], key: str | None, items: list[Any], headers: Any
    ) -> _Response:
        """One page of `items` with GitHub's Link header, ETag and 304 on If-None-Match.

        The page is ``{"total_count": n, key: [...]}``, or a bare list when `key` is None.
        """
        per_page = max(1, min(100, int(query.get("per_page", 30))))
        page = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        shown = items[(page - 1) * per_page : page * per_page]
        body: Any = {"total_count": len(items), key: shown} if key else shown
        links = []
        for rel, number in (("prev", page - 1), ("next", page + 1), ("first", 1), ("last", last)):
            if (rel in ("prev", "first") and page > 1) or (rel in ("next", "last") and page < last):
                links.append(f'<{url}?per_page={per_page}&page={number}>; rel="{rel}"')
        encoded = json.dumps(body, sort_keys=True).encode()
        etag = f'"{hashlib.sha256(encoded).hexdigest()[:40]}"'
        out = {"ETag": etag}
        if links:
            out["Link"] = ", ".join(links)
        if_none_match = headers.get("If-None-Match", "")
        if etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(",")):
            return _Response(304, None, out)
        return _Response(200, body, out)

    def _jit(self, scope_path: str, raw: bytes) -> _Response:
        try:
            request = json.loads(raw)
            name, group_id = str(request["name"]), int(request["runner_group_id"])
            labels = [str(label) for label in request["labels"]]
        except (ValueError, KeyError, TypeError):
            return _error(422, "Invalid request.")
        if not labels:
            return _error(422, "Invalid request. labels must not be empty")
        if all(group["id"] != group_id for group in self._groups_of(scope_path)):
            return _error(404, "Not Found")
        if any(r["name"] == name for r in self._runners.get(scope_path, {}).values()):
            return _error(409, f"Already exists - A runner with the name {name} already exists.")
        runner_id = self._register(scope_path, name, labels, "offline", False, group_id)
        runner = self._runners[scope_path][runner_id]
        secret = {"runner_id": runner_id, "name": name, "secret": secrets.token_hex(16)}
        encoded = base64.b64encode(json.dumps(secret).encode()).decode()
        return _Response(201, {"runner": runner, "encoded_jit_config": encoded})

    def _delete(self, scope_path: str, runner_id: int) -> _Response:
        runners = self._runners.get(scope_path, {})
        runner = runners.get(runner_id)
        if runner is None:
            return _error(404, "Not Found")
        if runner["busy"]:
            return _error(422, f'Bad request - Runner "{runner["name"]}" is still running a job')
        del runners[runner_id]
        self.actions.runner_gone(runner["name"], notify=False)
        return _Response(204)

    def _register(
        self, scope_path: str, name: str, labels: list[str], status: str, busy: bool, group: int
    ) -> int:
        runner_id = next(self._ids)
        self._runners.setdefault(scope_path, {})[runner_id] = {
            "id": runner_id,
            "name": name,
            "os": "Linux",
            "status": status,
            "busy": busy,
            "ephemeral": True,
            "runner_group_id": group,
            "labels": [{"id": 0, "name": label, "type": "custom"} for label in labels],
            "version": None,  # reported by the runner when it connects
        }
        return runner_id

    def _group_members_page(
        self, match: re.Match[str], url: str, query: dict[str, str], headers: Any
    ) -> _Response:
        """`GET /orgs/{org}/actions/runner-groups/{id}/repositories` (`minimal-repository`
        items) or `GET /enterprises/{enterprise}/.../organizations` (`organization-simple`)."""
        scope, group_id, kind = match["scope"], int(match["id"]), match["kind"]
        enterprise = scope.startswith("/enterprises/")
        if enterprise != (kind == "organizations") or not any(
            g["id"] == group_id for g in self._groups_of(scope)
        ):
            return _error(404, "Not Found")
        api = url.split("/orgs/")[0].split("/enterprises/")[0]
        members = self._group_members.get((scope, group_id), [])
        items = [
            payloads.organization(m, api) if enterprise else payloads.repository(m, api)
            for m in members
        ]
        return self._page(url, query, kind, items, headers)

    def _groups_of(self, scope_path: str) -> list[dict[str, Any]]:
        default = {"id": 1, "name": "Default", "default": True, "visibility": "all"}
        return self._groups.setdefault(scope_path, [default])


def _group(scope_url: str, group: dict[str, Any]) -> dict[str, Any]:
    """A runner group as GitHub lists it (organization and enterprise shapes share these)."""
    url = f"{scope_url}/actions/runner-groups/{group['id']}"
    selected = "selected_organizations_url" if "/enterprises/" in scope_url else None
    shown = {
        **group,
        "runners_url": f"{url}/runners",
        "allows_public_repositories": False,
        "restricted_to_workflows": False,
        "selected_workflows": [],
        "workflow_restrictions_read_only": False,
    }
    if selected is None:
        shown["inherited"] = False
        if group["visibility"] == "selected":
            shown["selected_repositories_url"] = f"{url}/repositories"
    elif group["visibility"] == "selected":
        shown[selected] = f"{url}/organizations"
    return shown


class _Handler(BaseHTTPRequestHandler):
    """Adapts http.server to `FakeGitHub.handle`; HTTP/1.1 so clients can keep connections."""

    protocol_version = "HTTP/1.1"
    fake: FakeGitHub

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host", "127.0.0.1")
        response = self.fake.handle(self.command, self.path, self.headers, body, host)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status in (204, 304):
            self.end_headers()
            return
        payload = json.dumps(response.body).encode()
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake github: " + format, *args)
