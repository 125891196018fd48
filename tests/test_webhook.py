"""The workflow_job webhook receiver: every signature case, limits, dedupe, parsing."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from reconciler.demand import (
    DemandBook,
    JobEvent,
    MemoryDemandStore,
    WebhookReceiver,
    parse_workflow_job,
)

SECRET = b"s3cret"


def payload(action: str = "queued", job_id: int = 7, labels: list[str] | None = None) -> dict:
    """A workflow_job payload in GitHub's shape (the fields we read and a few more)."""
    return {
        "action": action,
        "workflow_job": {
            "id": job_id,
            "run_id": 99,
            "run_attempt": 1,
            "workflow_name": "CI",
            "head_branch": "main",
            "name": "build",
            "status": action,
            "conclusion": "success" if action == "completed" else None,
            "labels": labels if labels is not None else ["self-hosted", "linux"],
            "created_at": "2026-11-29T10:00:00Z",
            "started_at": "2026-11-29T10:00:42Z",
            "completed_at": "2026-11-29T10:05:00Z" if action == "completed" else None,
            "runner_id": None if action == "queued" else 23,
            "runner_name": "pool-a-1234" if action != "queued" else None,
            "runner_group_name": None if action == "queued" else "Default",
        },
        "repository": {
            "id": 1296269,
            "name": "app",
            "full_name": "acme/app",
            "private": True,
            "owner": {"login": "acme", "type": "Organization"},
        },
        "organization": {"login": "acme", "id": 1},
        "enterprise": {"slug": "acme-corp", "id": 2},
        "sender": {"login": "octocat", "type": "User"},
    }


def delivery(body: bytes, number: int = 1, secret: bytes = SECRET, **extra: str) -> dict:
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "workflow_job",
        "X-GitHub-Delivery": f"delivery-{number}",
        "X-Hub-Signature-256": signature,
        **extra,
    }


@pytest.fixture
def received() -> list[JobEvent]:
    return []


@pytest.fixture
def book() -> DemandBook:
    return DemandBook(MemoryDemandStore())


@pytest.fixture
def receiver(book: DemandBook, received: list[JobEvent]) -> WebhookReceiver:
    return WebhookReceiver(SECRET, book, max_body=4096, on_accept=received.append)


def body_of(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_a_signed_delivery_is_accepted_once(
    receiver: WebhookReceiver, received: list[JobEvent]
) -> None:
    body = body_of(payload())
    assert receiver.handle(delivery(body), body).status == 200
    replay = receiver.handle(delivery(body), body)
    assert (replay.status, replay.message) == (200, "duplicate delivery ignored")
    assert [event.job_id for event in received] == [7]
    assert receiver.counts == {"accepted": 1, "duplicate": 1}


def test_a_replay_to_another_replica_sharing_the_store_is_a_duplicate(
    receiver: WebhookReceiver, book: DemandBook
) -> None:
    other = WebhookReceiver(SECRET, DemandBook(book.store))
    body = body_of(payload())
    assert receiver.handle(delivery(body), body).message == "job 7 queued"
    assert other.handle(delivery(body), body).message == "duplicate delivery ignored"
    assert other.counts == {"duplicate": 1}


def test_headers_are_case_insensitive(receiver: WebhookReceiver, book: DemandBook) -> None:
    body = body_of(payload())
    headers = {key.lower(): value for key, value in delivery(body).items()}
    assert receiver.handle(headers, body).status == 200
    job = book.job(7)
    assert job is not None and job.state == "queued"


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        (lambda h: h.pop("X-Hub-Signature-256"), "missing_signature"),
        (lambda h: h.update({"X-Hub-Signature-256": "sha256=" + "0" * 64}), "bad_signature"),
        (lambda h: h.update({"X-Hub-Signature-256": "sha1=abc"}), "bad_signature"),
        (
            lambda h: h.update({"x-hub-signature-256": h.pop("X-Hub-Signature-256")[:-1]}),
            "bad_signature",
        ),
    ],
    ids=["missing", "wrong", "other algorithm", "truncated"],
)
def test_unsigned_or_badly_signed_deliveries_are_401(
    receiver: WebhookReceiver, received: list[JobEvent], change: Any, outcome: str
) -> None:
    body = body_of(payload())
    headers = delivery(body)
    change(headers)
    assert receiver.handle(headers, body).status == 401
    assert received == [] and receiver.counts == {outcome: 1}
    # a rejected delivery does not poison dedupe: the genuine one still counts
    assert receiver.handle(delivery(body), body).status == 200


def test_signed_with_another_secret_is_401(receiver: WebhookReceiver) -> None:
    body = body_of(payload())
    assert receiver.handle(delivery(body, secret=b"other"), body).status == 401


def test_body_above_the_limit_is_413(receiver: WebhookReceiver) -> None:
    body = body_of(payload(labels=["x" * 5000]))
    assert receiver.handle(delivery(body), body).status == 413


@pytest.mark.parametrize(
    ("body", "event", "status", "outcome"),
    [
        (b"{}", "ping", 200, "ping"),
        (b"{}", "push", 202, "ignored_event"),
        (b"not json", "workflow_job", 400, "malformed"),
        (b"[]", "workflow_job", 400, "malformed"),
        (b'{"action": "queued"}', "workflow_job", 400, "malformed"),
        (body_of({**payload(), "action": "exploded"}), "workflow_job", 400, "malformed"),
        (body_of({**payload(), "workflow_job": {"id": "x"}}), "workflow_job", 400, "malformed"),
    ],
    ids=["ping", "push", "not json", "not an object", "no job", "unknown action", "bad job"],
)
def test_other_events_and_malformed_payloads(
    receiver: WebhookReceiver, body: bytes, event: str, status: int, outcome: str
) -> None:
    headers = delivery(body, **{"X-GitHub-Event": event})
    assert receiver.handle(headers, body).status == status
    assert receiver.counts == {outcome: 1}


def form_body(data: Any) -> bytes:
    """What GitHub sends for a hook with content type `form`: `payload=<urlencoded JSON>`."""
    return urlencode({"payload": json.dumps(data)}).encode()


FORM = "application/x-www-form-urlencoded"


def test_a_form_delivery_is_accepted_with_the_signature_over_the_raw_body(
    receiver: WebhookReceiver, received: list[JobEvent]
) -> None:
    body = form_body(payload(job_id=8))
    assert body.startswith(b"payload=%7B%22action%22")
    result = receiver.handle(delivery(body, **{"Content-Type": FORM}), body)
    assert (result.status, result.message) == (200, "job 8 queued")
    # a signature computed over the decoded JSON instead of the body as sent does not match
    inner = json.dumps(payload(job_id=8)).encode()
    headers = delivery(inner, number=2, **{"Content-Type": FORM})
    assert receiver.handle(headers, body).status == 401
    assert [event.job_id for event in received] == [8]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        (FORM, b"payload=%7Bnot-json", 400, "payload is not JSON"),
        (FORM, b"other=1", 400, "exactly one `payload` field"),
        (FORM, b"payload=1&payload=2", 400, "exactly one `payload` field"),
        (FORM, b"payload", 400, "form body does not parse"),
        (FORM, b"payload=\xff", 400, "form body does not parse"),
        ("text/plain", b"{}", 415, "Content-Type 'text/plain' not supported"),
        ("application/json; charset=utf-8", body_of(payload()), 200, "job 7 queued"),
        (FORM + "; charset=utf-8", form_body(payload()), 200, "job 7 queued"),
    ],
    ids=[
        "bad json",
        "no payload",
        "two payloads",
        "no value",
        "not ascii",
        "415",
        "json+cs",
        "form+cs",
    ],
)
def test_content_types(
    receiver: WebhookReceiver, content_type: str, body: bytes, status: int, message: str
) -> None:
    result = receiver.handle(delivery(body, **{"Content-Type": content_type}), body)
    assert result.status == status
    assert message in result.message


def test_missing_fields_and_delivery_ids_are_explained(receiver: WebhookReceiver) -> None:
    body = b'{"action": "queued", "repository": {}}'
    result = receiver.handle(delivery(body), body)
    assert (result.status, result.message) == (
        400,
        "workflow_job payload lacks field 'workflow_job'",
    )
    body = body_of(payload())
    headers = delivery(body)
    del headers["X-GitHub-Delivery"]
    assert receiver.handle(headers, body).message == "X-GitHub-Delivery missing"


def test_an_empty_secret_is_refused(book: DemandBook) -> None:
    with pytest.raises(ValueError, match="webhooks must be signed"):
        WebhookReceiver(b"", book)


def test_parse_takes_the_time_the_state_began() -> None:
    queued = parse_workflow_job("d1", payload("queued"))
    started = parse_workflow_job("d2", payload("in_progress"))
    done = parse_workflow_job("d3", payload("completed"))
    assert queued.at == datetime.datetime(2026, 11, 29, 10, 0, tzinfo=datetime.UTC)
    assert (started.at - queued.at).total_seconds() == 42  # the queue wait
    assert started.created_at == queued.at
    assert done.conclusion == "success" and done.runner_name == "pool-a-1234"
    assert (queued.repository, queued.organization, queued.labels) == (
        "acme/app",
        "acme",
        ("self-hosted", "linux"),
    )


def test_post_webhook_on_the_controller_listener(
    book: DemandBook, received: list[JobEvent]
) -> None:
    """Real socket: the controller's listener routes POST /webhook through the receiver."""
    import urllib.error
    import urllib.request

    from reconciler.controller.server import ControllerServer
    from reconciler.controller.status import StatusBoard

    receiver = WebhookReceiver(SECRET, book, max_body=4096, on_accept=received.append)
    server = ControllerServer("127.0.0.1", 0, StatusBoard(), lambda: True, webhooks=receiver)
    server.start()

    def post(body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(
            f"http://{server.address}/webhook", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    try:
        body = body_of(payload())
        assert post(body, delivery(body)) == 200
        assert post(body, {"X-GitHub-Event": "workflow_job"}) == 401
        big = b"x" * 5000
        assert post(big, delivery(big, number=2)) == 413
    finally:
        server.close()
    assert [event.job_id for event in received] == [7]
    assert receiver.counts == {"accepted": 1, "missing_signature": 1, "too_large": 1}
