"""Webhooks as GitHub sends them: one attempt per event, a delivery log, redelivery on request.

What GitHub documents, and this does:

- a delivery is one POST to the hook's URL, signed (`X-Hub-Signature-256`, HMAC-SHA256 of the
  body as sent), in the hook's content type (`json`, or `form`: `payload=<urlencoded JSON>`);
- the receiver must answer 2xx within 10 seconds; a slower answer, an error status or no
  connection at all is a failed delivery, and **GitHub does not retry it by itself**;
- every attempt is in the hook's delivery log (`GET .../deliveries`, newest first, `cursor`
  pagination through the `Link` header, `status=success` for status codes 200-399 and
  `status=failure` for 400-599: a delivery that never got an HTTP answer has status code 0 and
  matches neither); `GET .../deliveries/{id}` adds the request and response;
- `POST .../deliveries/{id}/attempts` (202) redelivers: a new delivery id, the same `guid`,
  `redelivery: true`, sent in the background.

The hooks are the GitHub App's (`/app/hook`, listed with the App's JWT), an organization's
(`/orgs/{org}/hooks/{id}`) or a repository's (`/repos/{owner}/{repo}/hooks/{id}`). What GitHub
shows for a timed-out delivery is not documented in the OpenAPI description; here it is
status "timed out", status code 0, like a refused connection ("failed to connect to host").
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from ..clock import WallClock, wall_time

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT = 10.0  # seconds GitHub waits for the receiver's answer


@dataclass
class Hook:
    """One configured webhook and its delivery log (oldest first)."""

    path: str  # /app/hook | /orgs/{org}/hooks/{id} | /repos/{owner}/{repo}/hooks/{id}
    hook_id: int
    url: str
    secret: bytes
    content_type: str = "json"
    installation_id: int | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)


class HookDeliveries:
    """The hooks of a simulated GitHub: sending, the delivery log, redelivery."""

    def __init__(self, clock: WallClock = wall_time, timeout: float = DELIVERY_TIMEOUT) -> None:
        self.clock = clock
        self.timeout = timeout
        self._lock = threading.Lock()
        self._hooks: dict[str, Hook] = {}
        self._ids = itertools.count(1)
        self._delivery_ids = itertools.count(90_000_001)
        self._http = httpx.Client(timeout=timeout)

    def add(
        self,
        url: str,
        secret: bytes,
        *,
        owner: str | None = None,
        content_type: str = "json",
        installation_id: int | None = None,
    ) -> str:
        """Configure a hook: the App's (`owner` None) or one of `/orgs/x` / `/repos/o/r`;
        returns its API path (`/app/hook`, `/orgs/x/hooks/1`, ...)."""
        if content_type not in ("json", "form"):
            raise ValueError(f"hook content type {content_type!r}: json or form")
        with self._lock:
            hook_id = next(self._ids)
            path = "/app/hook" if owner is None else f"{owner}/hooks/{hook_id}"
            self._hooks[path] = Hook(path, hook_id, url, secret, content_type, installation_id)
        return path

    def hook(self, path: str) -> Hook | None:
        with self._lock:
            return self._hooks.get(path)

    def send(self, path: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Deliver one event once (no retry); returns the delivery as the log shows it."""
        hook = self.hook(path)
        if hook is None:
            raise KeyError(f"no hook {path}")
        return self._attempt(hook, str(uuid.uuid4()), event, payload, redelivery=False)

    def redeliver(self, path: str, delivery_id: int) -> bool:
        """Start a new attempt of a logged delivery in the background; False if unknown."""
        hook = self.hook(path)
        original = self._find(hook, delivery_id) if hook is not None else None
        if hook is None or original is None:
            return False
        threading.Thread(
            target=self._attempt,
            args=(hook, original["guid"], original["event"], original["request"]["payload"]),
            kwargs={"redelivery": True},
            name="hook-redelivery",
            daemon=True,
        ).start()
        return True

    def listed(self, path: str, query: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the log, newest first, and the next page's cursor (None: last page)."""
        hook = self.hook(path)
        if hook is None:
            raise KeyError(path)
        per_page = max(1, min(100, int(query.get("per_page", 30))))
        status = query.get("status")
        if status not in (None, "success", "failure"):
            raise ValueError("status must be success or failure")
        with self._lock:
            newest_first = list(reversed(hook.deliveries))
        if status is not None:
            low, high = (200, 399) if status == "success" else (400, 599)
            newest_first = [d for d in newest_first if low <= d["status_code"] <= high]
        cursor = query.get("cursor")
        if cursor is not None:
            start = int(cursor.removeprefix("v1_"))
            newest_first = [d for d in newest_first if d["id"] <= start]
        page = newest_first[:per_page]
        following = newest_first[per_page : per_page + 1]
        hidden = ("url", "request", "response")  # only in the single-delivery view
        summary = [{k: v for k, v in d.items() if k not in hidden} for d in page]
        return summary, (f"v1_{following[0]['id']}" if following else None)

    def delivery(self, path: str, delivery_id: int) -> dict[str, Any] | None:
        hook = self.hook(path)
        return self._find(hook, delivery_id) if hook is not None else None

    def _find(self, hook: Hook, delivery_id: int) -> dict[str, Any] | None:
        with self._lock:
            return next((dict(d) for d in hook.deliveries if d["id"] == delivery_id), None)

    def _attempt(
        self, hook: Hook, guid: str, event: str, payload: dict[str, Any], *, redelivery: bool
    ) -> dict[str, Any]:
        raw = json.dumps(payload).encode()
        if hook.content_type == "form":
            body = urlencode({"payload": raw}).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            body, content_type = raw, "application/json"
        headers = {
            "Content-Type": content_type,
            "User-Agent": "GitHub-Hookshot/sandbox",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": str(hook.hook_id),
            "X-Hub-Signature": "sha1=" + hmac.new(hook.secret, body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256="
            + hmac.new(hook.secret, body, hashlib.sha256).hexdigest(),
        }
        started, began = self.clock(), time.monotonic()
        answer_headers: dict[str, str] | None = None
        answer: str | None = None
        try:
            response = self._http.post(hook.url, content=body, headers=headers)
        except httpx.TimeoutException:
            status, code = "timed out", 0
        except httpx.HTTPError as error:
            status, code = "failed to connect to host", 0
            log.debug("delivery %s to %s failed: %s", guid, hook.url, error)
        else:
            code = response.status_code
            status = "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"
            answer_headers, answer = dict(response.headers), response.text
        with self._lock:
            delivery = {
                "id": next(self._delivery_ids),
                "guid": guid,
                "delivered_at": _iso(started),
                "redelivery": redelivery,
                "duration": round(time.monotonic() - began, 3),
                "status": status,
                "status_code": code,
                "event": event,
                "action": payload.get("action"),
                "installation_id": hook.installation_id,
                "repository_id": (payload.get("repository") or {}).get("id"),
                "throttled_at": None,
                "url": hook.url,
                "request": {"headers": headers, "payload": payload},
                "response": {"headers": answer_headers, "payload": answer},
            }
            hook.deliveries.append(delivery)
        return dict(delivery)

    def close(self) -> None:
        self._http.close()


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
