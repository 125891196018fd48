"""The simulated GitHub's webhooks behave like GitHub's: one attempt, a log, redelivery on request.

A local HTTP receiver answers each delivery with a chosen status or after a chosen delay; the
deliveries API is called over HTTP like any client would.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reconciler.github.auth import app_jwt
from reconciler.sandbox.github_server import FakeGitHub
from reconciler.sandbox.hooks import DELIVERY_TIMEOUT

from .conftest import wait_for

pytestmark = pytest.mark.e2e  # starts servers or processes

SECRET = b"hook-secret"
PAYLOAD = {"action": "queued", "workflow_job": {"id": 1}, "repository": {"id": 42}}


class Receiver:
    """Answers `status` after `delay` seconds; keeps what it received."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "3")
                    self.end_headers()
                    self.wfile.write(b"ok\n")
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def github(app_key: rsa.RSAPrivateKey) -> Iterator[FakeGitHub]:
    with FakeGitHub(delivery_timeout=0.5) as github:
        public = app_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        github.configure_app(7, public, installation_id=70)
        yield github


def as_app(app_key: rsa.RSAPrivateKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {app_jwt('7', app_key, time.time())}"}


TOKEN = {"Authorization": "Bearer test-token"}


def test_github_waits_ten_seconds() -> None:
    assert DELIVERY_TIMEOUT == 10.0


def test_a_delivery_is_signed_and_sent_once_in_either_content_type(
    github: FakeGitHub, receiver: Receiver
) -> None:
    form = github.add_hook(receiver.url, SECRET, owner="/orgs/acme", content_type="form")
    delivery = github.send_webhook(form, "workflow_job", PAYLOAD)
    assert (delivery["status"], delivery["status_code"], delivery["redelivery"]) == (
        "OK",
        200,
        False,
    )
    headers, body = receiver.received[0]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(body.decode())["payload"][0].startswith('{"action": "queued"')
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == expected
    assert headers["X-GitHub-Delivery"] == delivery["guid"]
    with pytest.raises(ValueError, match="json or form"):
        github.add_hook(receiver.url, SECRET, content_type="xml")


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        ("refused", "failed to connect to host", 0),
        ("503", "Invalid HTTP Response: 503", 503),
        ("slow", "timed out", 0),
    ],
)
def test_a_failed_delivery_is_logged_and_never_retried(
    github: FakeGitHub, receiver: Receiver, setup: str, status: str, code: int
) -> None:
    url = receiver.url
    if setup == "refused":
        receiver.close()
    elif setup == "503":
        receiver.status = 503
    else:
        receiver.delay = 1.0  # over the hook's timeout (0.5 s here, 10 s on GitHub)
    hook = github.add_hook(url, SECRET)
    delivery = github.send_webhook(hook, "workflow_job", PAYLOAD)
    assert (delivery["status"], delivery["status_code"]) == (status, code)
    assert len(github.hooks.hook(hook).deliveries) == 1  # type: ignore[union-attr]


def test_the_log_filters_by_status_code_range_and_pages_by_cursor(
    github: FakeGitHub, receiver: Receiver, app_key: rsa.RSAPrivateKey
) -> None:
    hook = github.add_hook(receiver.url, SECRET, installation_id=70)
    for status in (200, 503, 200):
        receiver.status = status
        github.send_webhook(hook, "workflow_job", PAYLOAD)
    receiver.close()
    github.send_webhook(hook, "workflow_job", PAYLOAD)  # status code 0
    url = f"{github.url}/app/hook/deliveries"
    with httpx.Client(headers=as_app(app_key)) as http:
        codes = [d["status_code"] for d in http.get(url).json()]
        assert codes == [0, 200, 503, 200]  # newest first
        assert [d["status_code"] for d in http.get(url, params={"status": "success"}).json()] == [
            200,
            200,
        ]
        assert [d["status_code"] for d in http.get(url, params={"status": "failure"}).json()] == [
            503
        ]
        first = http.get(url, params={"per_page": 3})
        assert len(first.json()) == 3
        second = http.get(first.links["next"]["url"])
        assert [d["status_code"] for d in second.json()] == [200] and "next" not in second.links
        assert http.get(url, params={"status": "lost"}).status_code == 422
        assert httpx.get(url, headers=TOKEN).status_code == 401  # the App's hook: JWT only


def test_redelivery_only_on_request_same_guid(
    github: FakeGitHub, receiver: Receiver, app_key: rsa.RSAPrivateKey
) -> None:
    receiver.status = 500
    hook = github.add_hook(receiver.url, SECRET, owner="/repos/acme/app")
    failed = github.send_webhook(hook, "workflow_job", PAYLOAD)
    receiver.status = 200
    base = f"{github.url}{hook}/deliveries"
    with httpx.Client(headers=TOKEN) as http:
        one = http.get(f"{base}/{failed['id']}").json()
        assert one["request"]["payload"] == PAYLOAD and one["response"]["payload"] == "ok\n"
        assert http.post(f"{base}/{failed['id']}/attempts").status_code == 202
        wait_for(lambda: len(http.get(base).json()) == 2)
        again, first = http.get(base).json()
        assert (again["guid"], again["redelivery"], again["status_code"]) == (
            failed["guid"],
            True,
            200,
        )
        assert first["id"] == failed["id"] and again["id"] != failed["id"]
        assert http.post(f"{base}/999/attempts").status_code == 404
        assert http.get(f"{github.url}/orgs/acme/hooks/99/deliveries").status_code == 404
    assert len(receiver.received) == 2
