"""Lost deliveries recovered: the leader asks GitHub to redeliver failed ones, once per event.

Against the simulated GitHub's hooks (which, like GitHub, never retry by themselves) and a
local receiver whose answers the tests choose.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reconciler.demand import MemoryDemandStore, Redeliverer
from reconciler.demand.redelivery import failed_events
from reconciler.github import AppAuth, GitHubClient, GitHubError, TokenAuth
from reconciler.github.client import HookDelivery
from reconciler.sandbox.github_server import FakeGitHub

from .conftest import run_cli, wait_for
from .test_github_hooks import Receiver

pytestmark = pytest.mark.e2e  # starts servers or processes

T0 = datetime.datetime(2026, 11, 30, 9, 0, tzinfo=datetime.UTC)
ORG_HOOK_OWNER = "/orgs/acme"
LISTS = "GET /orgs/{org}/hooks/{hook_id}/deliveries"
ASKS = "POST /orgs/{org}/hooks/{hook_id}/deliveries/{delivery_id}/attempts"


class Clock:
    """Wall-clock time the test moves (GitHub's delivery times and the redeliverer's)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()


def attempt(n: int, guid: str, code: int, event: str = "workflow_job") -> HookDelivery:
    return HookDelivery(n, guid, T0, n > 1, code, event, "queued")


@pytest.mark.parametrize(
    ("attempts", "failed"),
    [
        ([attempt(1, "a", 0)], {"a": 1}),  # no HTTP answer: status code 0
        ([attempt(1, "a", 503), attempt(2, "a", 0)], {"a": 2}),  # the newest attempt
        ([attempt(1, "a", 0), attempt(2, "a", 200)], {}),  # redelivered with success
        ([attempt(1, "a", 301)], {"a": 1}),  # not 2xx: GitHub shows it failed
        ([attempt(1, "a", 0, event="ping")], {}),  # only workflow_job events matter
    ],
)
def test_an_event_failed_when_none_of_its_attempts_succeeded(
    attempts: list[HookDelivery], failed: dict[str, int]
) -> None:
    assert {guid: d.id for guid, d in failed_events(attempts).items()} == failed


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github(clock: Clock) -> Iterator[FakeGitHub]:
    with FakeGitHub(clock=clock.epoch, delivery_timeout=1.0) as github:
        yield github


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def client(github: FakeGitHub) -> Iterator[GitHubClient]:
    with GitHubClient(github.url, TokenAuth("test-token"), sleep=lambda _: None) as client:
        yield client


def send(github: FakeGitHub, hook: str, job_id: int, event: str = "workflow_job") -> dict:
    payload = {"action": "queued", "workflow_job": {"id": job_id}, "repository": {"id": 1}}
    return github.send_webhook(hook, event, payload)


def statuses(github: FakeGitHub, hook: str) -> list[tuple[str, bool, int]]:
    deliveries = github.hooks.hook(hook).deliveries  # type: ignore[union-attr]
    return [(d["guid"], d["redelivery"], d["status_code"]) for d in deliveries]


def test_failed_events_are_redelivered_once_each(
    github: FakeGitHub, receiver: Receiver, client: GitHubClient, clock: Clock
) -> None:
    hook = github.add_hook(receiver.url, b"s", owner=ORG_HOOK_OWNER)
    receiver.status = 503
    failed = [send(github, hook, job_id) for job_id in (1, 2, 3)]
    send(github, hook, 4, event="ping")
    receiver.status = 200
    send(github, hook, 5)
    redeliverer = Redeliverer(client, hook, MemoryDemandStore(), clock=clock)
    assert redeliverer.run().requested == 3
    wait_for(lambda: len(statuses(github, hook)) == 8)
    again = [(guid, code) for guid, redelivered, code in statuses(github, hook) if redelivered]
    assert sorted(again) == sorted((d["guid"], 200) for d in failed)
    clock.now += datetime.timedelta(minutes=1)
    assert redeliverer.run().requested == 0  # delivered now
    assert client.calls[ASKS] == 3


def test_an_event_whose_redelivery_failed_too_is_not_asked_again(
    github: FakeGitHub, receiver: Receiver, client: GitHubClient, clock: Clock
) -> None:
    hook = github.add_hook(receiver.url, b"s", owner=ORG_HOOK_OWNER)
    receiver.status = 500
    send(github, hook, 1)
    store = MemoryDemandStore()
    first = Redeliverer(client, hook, store, clock=clock)
    assert first.run().requested == 1
    wait_for(lambda: len(statuses(github, hook)) == 2)
    clock.now += datetime.timedelta(minutes=1)
    later = first.run()
    assert (later.failed, later.requested, later.claimed_before) == (1, 0, 1)
    # another replica (or a restarted leader) sharing the store does not ask either
    other = Redeliverer(client, hook, store, clock=clock)
    assert other.run().requested == 0
    assert client.calls[ASKS] == 1


def test_a_refused_request_is_asked_again_at_the_next_pass(
    github: FakeGitHub, receiver: Receiver, client: GitHubClient, clock: Clock
) -> None:
    hook = github.add_hook(receiver.url, b"s", owner=ORG_HOOK_OWNER)
    receiver.status = 500
    send(github, hook, 1)
    receiver.status = 200
    redeliverer = Redeliverer(client, hook, MemoryDemandStore(), clock=clock)
    github.fail_next(1, status=422, method="POST")  # the redelivery request is refused
    with pytest.raises(GitHubError):
        redeliverer.run()
    assert redeliverer.run().requested == 1  # the claim was released


def test_a_steady_pass_reads_one_page(
    github: FakeGitHub, receiver: Receiver, client: GitHubClient, clock: Clock
) -> None:
    """The first pass reads the whole window; later ones only back to the previous pass."""
    hook = github.add_hook(receiver.url, b"s", owner=ORG_HOOK_OWNER)
    old = github.send_webhook  # 250 deliveries over the last two hours, all delivered
    clock.now = T0 - datetime.timedelta(hours=2)
    for job_id in range(250):
        old(hook, "workflow_job", {"action": "queued", "workflow_job": {"id": job_id}})
        clock.now += datetime.timedelta(seconds=28)
    clock.now = T0
    redeliverer = Redeliverer(client, hook, MemoryDemandStore(), clock=clock)
    assert redeliverer.run().listed == 250
    assert client.calls[LISTS] == 3  # 100 a page
    clock.now += datetime.timedelta(minutes=1)
    for job_id in range(250, 260):
        send(github, hook, job_id)
    assert redeliverer.run().listed < 100
    assert client.calls[LISTS] == 4


def test_the_app_s_hook_is_read_as_the_app(
    github: FakeGitHub, receiver: Receiver, clock: Clock
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    github.configure_app(3, public, installation_id=30)
    hook = github.add_hook(receiver.url, b"s", installation_id=30)
    receiver.status = 502
    send(github, hook, 1)
    receiver.status = 200
    with GitHubClient(github.url, AppAuth(3, pem, 30, clock=clock.epoch)) as app:
        assert Redeliverer(app, hook, MemoryDemandStore(), clock=clock).run().requested == 1
    with (
        GitHubClient(github.url, TokenAuth("test-token")) as token,
        pytest.raises(GitHubError, match="needs GitHub App credentials"),
    ):
        Redeliverer(token, hook, MemoryDemandStore(), clock=clock).run()


def test_a_malformed_hook_path_is_refused(client: GitHubClient) -> None:
    with pytest.raises(ValueError, match="not a webhook path"):
        Redeliverer(client, "/orgs/acme/hooks/x", MemoryDemandStore())
    with pytest.raises(ValueError, match="positive"):
        Redeliverer(client, "/app/hook", MemoryDemandStore(), interval=0)


def test_run_refuses_a_hook_without_webhooks() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GITHUB_", "AWS_", "ECS_RECONCILER_"))
    }
    env["AWS_REGION"] = "us-east-1"
    done = run_cli(
        "run", "--webhook-hook", "/orgs/acme/hooks/1", "--listen", "127.0.0.1:0", env=env
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "--webhook-hook needs GITHUB_WEBHOOK_SECRET" in done.stderr
