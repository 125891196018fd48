"""The `workflow_job` webhook receiver: signature check, size limit, dedupe, parsing.

Framework-free: the controller's HTTP handler passes the headers and the raw body to
`WebhookReceiver.handle` and writes back the status it returns. With a `DemandWriter` (the
controller), an accepted job event is put on its bounded queue and acknowledged with no I/O
(a full queue is 503, so GitHub's log shows the failure); the writer stores it in the demand
book and calls its own `on_recorded`. Without one (tests, the simulator), the event is
recorded in the book before answering, then passed to `on_accept`. With `pools`, a job no
pool serves (labels, scope) is acknowledged and dropped, never stored.

- `X-Hub-Signature-256` must be `sha256=<HMAC-SHA256 of the raw body with the secret>`,
  compared in constant time; a missing or wrong signature is 401 and counted.
- Bodies above `max_body` bytes are 413 (the caller should check Content-Length before
  reading, with `max_body`).
- A delivery id (`X-GitHub-Delivery`) the demand book recorded before is acknowledged (200)
  and ignored (by the writer, when there is one): GitHub redelivers, and an attacker may
  replay a signed body. The book's store keeps the ids, so a replay to another replica is
  caught too.
- Both content types a hook can be configured with are read: `application/json` (the body is
  the payload) and `application/x-www-form-urlencoded` (the body is `payload=<urlencoded
  JSON>`, the default when a hook is created through the API). The signature covers the raw
  body as sent in either case. Any other content type is 415.
- `ping` is 200, other events 202 (ignored), malformed payloads 400.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from .book import DemandBook, PoolDemandSpec, filing_pool
from .events import JobEvent
from .writer import DemandWriter

MAX_BODY = 1_048_576  # GitHub caps webhook payloads at 25 MB; workflow_job ones are a few KB
ACTIONS = ("queued", "waiting", "in_progress", "completed")


@dataclass(frozen=True)
class WebhookResult:
    """The HTTP status to answer and a short message."""

    status: int
    message: str


class WebhookReceiver:
    """Validates and parses webhook deliveries; records accepted job events in `demand`."""

    def __init__(
        self,
        secret: bytes,
        demand: DemandBook,
        max_body: int = MAX_BODY,
        on_accept: Callable[[JobEvent], None] | None = None,
        *,
        pools: Callable[[], Sequence[PoolDemandSpec] | None] | None = None,
        writer: DemandWriter | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required: webhooks must be signed")
        self.secret = secret
        self.demand = demand
        self.max_body = max_body
        self.on_accept = on_accept
        self.pools = pools
        self.writer = writer
        self.counts: Counter[str] = Counter()

    @classmethod
    def queued(
        cls,
        secret: bytes,
        demand: DemandBook,
        pools: Callable[[], Sequence[PoolDemandSpec] | None],
        on_recorded: Callable[[JobEvent], None] | None = None,
        **writer_options: Any,
    ) -> WebhookReceiver:
        """The controller's receiver: acknowledged at once, stored by a started `DemandWriter`
        (`close()` stops it)."""
        writer = DemandWriter(demand, pools, on_recorded=on_recorded, **writer_options)
        return cls(secret, demand, pools=pools, writer=writer.start())

    def close(self, timeout: float = 5.0) -> None:
        """Store what the writer holds (up to `timeout`), then stop it."""
        if self.writer is not None:
            self.writer.close(timeout)

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
            payload = decode_payload(header.get("content-type", ""), body)
        except UnsupportedContentType as error:
            return self._answer("unsupported_media_type", 415, str(error))
        except ValueError as error:
            return self._answer("malformed", 400, str(error))
        try:
            job = parse_workflow_job(delivery, payload)
        except KeyError as error:
            return self._answer("malformed", 400, f"workflow_job payload lacks field {error}")
        except (ValueError, TypeError) as error:
            return self._answer("malformed", 400, f"not a workflow_job payload: {error}")
        pools = self.pools() if self.pools is not None else None
        pool = filing_pool(job, pools) if pools is not None else None
        if self.writer is None and self.pools is not None and pools is None:
            return self._answer("not_ready", 503, "pools not known yet, redeliver")
        if pools is not None and pool is None:
            return self._answer("no_pool", 200, f"job {job.job_id}: no pool serves it, ignored")
        if self.writer is not None:
            if not self.writer.offer(job):
                return self._answer("queue_full", 503, "too many deliveries queued, redeliver")
            return self._answer("accepted", 200, f"job {job.job_id} {job.action}")
        if not self.demand.record(job, pool.name if pool is not None else None):
            return self._answer("duplicate", 200, "duplicate delivery ignored")
        if self.on_accept is not None:
            self.on_accept(job)
        return self._answer("accepted", 200, f"job {job.job_id} {job.action}")

    def _answer(self, outcome: str, status: int, message: str) -> WebhookResult:
        self.counts[outcome] += 1
        return WebhookResult(status, message)


class UnsupportedContentType(ValueError):
    """The delivery's Content-Type is neither of the two a GitHub hook can send."""


FORM = "application/x-www-form-urlencoded"


def decode_payload(content_type: str, body: bytes) -> Any:
    """The JSON payload of a delivery sent as `application/json` or as a form (`payload=`).

    A missing Content-Type is read as JSON. Raises UnsupportedContentType for other types and
    ValueError when the body does not hold a payload.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in ("", "application/json"):
        text = body
    elif media_type == FORM:
        try:
            fields = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=10)
        except (UnicodeDecodeError, ValueError) as error:
            raise ValueError(f"form body does not parse: {error}") from error
        values = fields.get("payload", [])
        if len(values) != 1:
            raise ValueError("form body must carry exactly one `payload` field")
        text = values[0].encode()
    else:
        raise UnsupportedContentType(
            f"Content-Type {media_type!r} not supported: use application/json or {FORM}"
        )
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"payload is not JSON: {error}") from error


def parse_workflow_job(delivery: str, payload: Any) -> JobEvent:
    """GitHub's `workflow_job` payload -> JobEvent; raises ValueError/KeyError if malformed."""
    if not isinstance(payload, dict):
        raise ValueError("the payload is not a JSON object")
    job, repository = payload["workflow_job"], payload["repository"]
    action = str(payload["action"])
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    # older payloads lack `created_at` (GitHub's own in_progress example): the job was
    # created no later than it started
    created_text = job.get("created_at") or job.get("started_at")
    if not created_text:
        raise KeyError("workflow_job.created_at")
    created = _timestamp(created_text)
    # GitHub sends `started_at` = `created_at` while a job waits for a runner: it started only
    # once in progress, or when it completed on a runner (not when cancelled while queued)
    ran = action == "in_progress" or (action == "completed" and job.get("runner_name"))
    started = _timestamp(job["started_at"]) if ran and job.get("started_at") else None
    moment = {
        "in_progress": job.get("started_at"),
        "completed": job.get("completed_at"),
    }.get(action)
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
        at=_timestamp(moment) if moment else created,
        created_at=created,
        started_at=started,
    )


def _timestamp(value: Any) -> datetime.datetime:
    """GitHub's ISO 8601 time (`...Z`) -> an aware datetime."""
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
