"""The `workflow_job` webhook receiver: signature check, size limit, dedupe, parsing.

Framework-free: the controller's HTTP handler passes the headers and the raw body to
`WebhookReceiver.handle` and writes back the status it returns. What happens to an accepted
event is the `sink`'s business (the demand book, once built).

- `X-Hub-Signature-256` must be `sha256=<HMAC-SHA256 of the raw body with the secret>`,
  compared in constant time; a missing or wrong signature is 401 and counted.
- Bodies above `max_body` bytes are 413 (the caller should check Content-Length before
  reading, with `max_body`).
- A delivery id (`X-GitHub-Delivery`) seen before is acknowledged (200) and ignored: GitHub
  redelivers, and an attacker may replay a signed body.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_BODY = 1_048_576  # GitHub caps webhook payloads at 25 MB; workflow_job ones are a few KB
REMEMBERED_DELIVERIES = 100_000


@dataclass(frozen=True)
class JobEvent:
    """One `workflow_job` event, reduced to what demand and metrics need."""

    delivery: str
    action: str  # queued | in_progress | completed | waiting
    job_id: int
    run_id: int
    repository: str  # owner/name
    organization: str
    labels: tuple[str, ...]
    conclusion: str | None
    runner_name: str | None
    at: datetime.datetime  # when this state began (queued: created_at)


@dataclass(frozen=True)
class WebhookResult:
    """The HTTP status to answer and a short message."""

    status: int
    message: str


class WebhookReceiver:
    """Validates and parses webhook deliveries; hands accepted job events to `sink`."""

    def __init__(
        self,
        secret: bytes,
        sink: Callable[[JobEvent], None],
        max_body: int = MAX_BODY,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required: unsigned webhooks are refused")
        self.secret = secret
        self.sink = sink
        self.max_body = max_body
        self.counts: Counter[str] = Counter()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def handle(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Check, dedupe and parse one delivery."""
        header = {key.lower(): value for key, value in headers.items()}
        if len(body) > self.max_body:
            return self._answer("too_large", 413, f"body above {self.max_body} bytes")
        signature = header.get("x-hub-signature-256", "")
        if not signature:
            return self._answer("missing_signature", 401, "X-Hub-Signature-256 missing")
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return self._answer("bad_signature", 401, "signature does not match")
        event = header.get("x-github-event", "")
        if event == "ping":
            return self._answer("ping", 200, "pong")
        if event != "workflow_job":
            return self._answer("ignored_event", 202, f"event {event or '(none)'} ignored")
        delivery = header.get("x-github-delivery", "")
        if not delivery:
            return self._answer("malformed", 400, "X-GitHub-Delivery missing")
        try:
            job = parse_workflow_job(delivery, json.loads(body))
        except (ValueError, KeyError, TypeError) as error:
            return self._answer("malformed", 400, f"not a workflow_job payload: {error}")
        if not self._first_time(delivery):
            return self._answer("duplicate", 200, "duplicate delivery ignored")
        self.sink(job)
        return self._answer("accepted", 200, f"job {job.job_id} {job.action}")

    def _first_time(self, delivery: str) -> bool:
        with self._lock:
            if delivery in self._seen:
                return False
            self._seen[delivery] = None
            if len(self._seen) > REMEMBERED_DELIVERIES:
                self._seen.popitem(last=False)
            return True

    def _answer(self, outcome: str, status: int, message: str) -> WebhookResult:
        self.counts[outcome] += 1
        return WebhookResult(status, message)


def parse_workflow_job(delivery: str, payload: Any) -> JobEvent:
    """GitHub's `workflow_job` payload -> JobEvent; raises ValueError/KeyError if malformed."""
    if not isinstance(payload, dict):
        raise ValueError("the payload is not a JSON object")
    job, repository = payload["workflow_job"], payload["repository"]
    action = str(payload["action"])
    moment = {
        "in_progress": job.get("started_at"),
        "completed": job.get("completed_at"),
    }.get(action) or job["created_at"]
    labels = job.get("labels") or []
    if not isinstance(labels, list):
        raise ValueError("workflow_job.labels is not a list")
    return JobEvent(
        delivery=delivery,
        action=action,
        job_id=int(job["id"]),
        run_id=int(job.get("run_id") or 0),
        repository=str(repository["full_name"]),
        organization=str((payload.get("organization") or repository["owner"])["login"]),
        labels=tuple(str(label) for label in labels),
        conclusion=job.get("conclusion"),
        runner_name=job.get("runner_name"),
        at=datetime.datetime.fromisoformat(str(moment).replace("Z", "+00:00")),
    )
