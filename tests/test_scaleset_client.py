"""The scale-set client against the simulated GitHub + Actions service over real sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from reconciler.github import GitHubClient, GitHubError, Scope, TokenAuth
from reconciler.github.scaleset.client import ScaleSetClient
from reconciler.github.scaleset.errors import RunnerExists, ScaleSetNotFound, SessionConflict
from reconciler.github.scaleset.session import MessageSession
from reconciler.sandbox.github_server import FakeGitHub

pytestmark = pytest.mark.e2e  # starts servers

ORG = Scope("organization", "acme")
TOKEN = "test-token"


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def github(clock: FakeClock) -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=[TOKEN], clock=clock) as server:
        server.actions.poll_timeout = 0.3
        yield server


def client_for(github: FakeGitHub, clock: FakeClock, scope: Scope = ORG) -> ScaleSetClient:
    rest = GitHubClient(github.url, TokenAuth(TOKEN), clock=clock, sleep=lambda _: None)
    return ScaleSetClient(rest, scope, clock=clock, sleep=lambda _: None, poll_timeout=10)


def test_the_way_in_is_registration_token_then_remote_auth(
    github: FakeGitHub, clock: FakeClock
) -> None:
    client = client_for(github, clock)
    connection = client.admin_connection()
    assert connection.url == github.actions.service_url
    assert client.github.calls == {
        "POST /orgs/{org}/actions/runners/registration-token": 1,
        "POST /actions/runner-registration": 1,
    }
    # cached until 60 s before the admin token's exp, then refreshed
    client.admin_connection()
    assert client.github.calls["POST /actions/runner-registration"] == 1
    clock.now += 3600 - 59
    client.admin_connection()
    assert client.github.calls["POST /actions/runner-registration"] == 2


def test_a_revoked_admin_token_is_refreshed_once(github: FakeGitHub, clock: FakeClock) -> None:
    client = client_for(github, clock)
    client.ensure_scale_set("pool-a", "", ["pool-a"])
    github.actions.expire_admin_tokens()
    assert client.get_scale_set(1, "pool-a") is not None
    assert client.github.calls["POST /actions/runner-registration"] == 2


def test_runner_registration_refuses_a_config_url_of_another_scope(
    github: FakeGitHub, clock: FakeClock
) -> None:
    rest = GitHubClient(github.url, TokenAuth(TOKEN), clock=clock, sleep=lambda _: None)
    token = rest.create_registration_token(ORG)
    with pytest.raises(GitHubError, match="404"):
        rest.runner_registration(github.url + "/someone-else", token)


@pytest.mark.parametrize(
    ("scope", "prefix"),
    [
        (Scope("organization", "acme"), ""),
        (Scope("repository", "acme/app"), ""),
        (Scope("enterprise", "big"), "/api/v3"),  # GHES
        (Scope("organization", "acme"), "/api/v3"),
    ],
)
def test_scopes_and_ghes(clock: FakeClock, scope: Scope, prefix: str) -> None:
    with FakeGitHub(tokens=[TOKEN], clock=clock, prefix=prefix) as github:
        client = client_for(github, clock, scope)
        created = client.ensure_scale_set("pool-a", "", ["self-hosted", "pool-a"])
        assert created.label_names == ["self-hosted", "pool-a"]
        assert github.actions.scale_sets(scope.path)[0]["name"] == "pool-a"


def test_scale_set_is_created_adopted_updated_and_recreated(
    github: FakeGitHub, clock: FakeClock
) -> None:
    github.add_runner_group("/orgs/acme", "ci")
    client = client_for(github, clock)
    created = client.ensure_scale_set("pool-a", "ci", ["pool-a"])
    assert created.runner_group_name == "ci" and created.disable_update
    adopted = client_for(github, clock).ensure_scale_set("pool-a", "ci", ["pool-a"])
    assert adopted.id == created.id
    assert "PATCH /_apis/runtime/runnerscalesets/{id}" not in client.calls
    updated = client.ensure_scale_set("pool-a", "ci", ["pool-a", "gpu"])
    assert updated.id == created.id and updated.label_names == ["pool-a", "gpu"]
    github.actions.delete_scale_set(created.id)  # GitHub removes scale sets idle 7 days
    with pytest.raises(ScaleSetNotFound):
        client.get_scale_set_by_id(created.id)
    recreated = client.ensure_scale_set("pool-a", "ci", ["pool-a"])
    assert recreated.id != created.id


def test_an_unknown_runner_group_is_a_clear_error(github: FakeGitHub, clock: FakeClock) -> None:
    with pytest.raises(LookupError, match="no runner group named 'nope'"):
        client_for(github, clock).ensure_scale_set("pool-a", "nope", ["pool-a"])


def test_one_session_per_scale_set(github: FakeGitHub, clock: FakeClock) -> None:
    client = client_for(github, clock)
    scale_set = client.ensure_scale_set("pool-a", "", ["pool-a"])
    first = MessageSession.open(client, scale_set.id, "replica-1")
    with pytest.raises(SessionConflict, match="already has an active session for owner replica-1"):
        MessageSession.open(client_for(github, clock), scale_set.id, "replica-2")
    first.close()
    second = MessageSession.open(client, scale_set.id, "replica-2")
    # a holder that stops polling lapses: the conflict is waited out, never fought
    clock.now += github.actions.session_idle_timeout + 1
    third = MessageSession.open(client, scale_set.id, "replica-3")
    assert second.info.session_id != third.info.session_id


def test_long_poll_headers_202_and_the_queue_on_another_host(
    github: FakeGitHub, clock: FakeClock
) -> None:
    client = client_for(github, clock)
    scale_set = client.ensure_scale_set("pool-a", "", ["pool-a"])
    session = MessageSession.open(client, scale_set.id, "me")
    queue = urlsplit(session.info.message_queue_url)
    assert queue.netloc != urlsplit(github.actions.service_url).netloc
    started = time.monotonic()
    assert session.get_message(0, 17) is None  # 202 after the poll window
    assert time.monotonic() - started >= github.actions.poll_timeout * 0.9
    assert github.actions.max_capacity(scale_set.id) == 17
    with pytest.raises(ValueError):
        session.get_message(0, -1)


def test_job_lifecycle_messages_and_statistics(github: FakeGitHub, clock: FakeClock) -> None:
    client = client_for(github, clock)
    scale_set = client.ensure_scale_set("pool-a", "", ["pool-a"])
    session = MessageSession.open(client, scale_set.id, "me")
    request_id = github.actions.queue_job("/orgs/acme", ["pool-a"], "acme/app", 5)
    assert github.actions.queue_job("/orgs/acme", ["other"], "acme/app", 6) is None
    message = session.get_message(0, 10)
    assert message is not None and [j.runner_request_id for j in message.available] == [request_id]
    assert message.statistics.total_available_jobs == 1
    assert session.acquire_jobs([request_id, 999]) == [request_id]
    session.delete_message(message.message_id)
    jit = client.generate_jit_config(scale_set.id, "pool-a-r1")
    assert jit.runner.runner_scale_set_id == scale_set.id and jit.encoded_jit_config
    github.actions.runner_connected("pool-a-r1")
    message = session.get_message(message.message_id, 10)
    assert message is not None
    assert [j.kind for j in message.jobs] == ["JobAssigned", "JobStarted"]
    assert message.statistics.total_assigned_jobs == 1  # running jobs are assigned jobs
    assert message.statistics.total_running_jobs == 1
    session.delete_message(message.message_id)
    github.actions.complete_job(request_id)
    message = session.get_message(message.message_id, 10)
    assert message is not None and message.jobs[0].result == "succeeded"
    assert message.statistics.total_assigned_jobs == 0


def test_unacknowledged_messages_reach_the_next_session(
    github: FakeGitHub, clock: FakeClock
) -> None:
    client = client_for(github, clock)
    scale_set = client.ensure_scale_set("pool-a", "", ["pool-a"])
    session = MessageSession.open(client, scale_set.id, "leader-1")
    github.actions.queue_job("/orgs/acme", ["pool-a"], "acme/app", 1)
    first = session.get_message(0, 10)
    assert first is not None
    github.actions.queue_job("/orgs/acme", ["pool-a"], "acme/app", 2)
    second = session.get_message(first.message_id, 10)
    assert second is not None
    session.delete_message(first.message_id)  # only the first was recorded
    # the leader dies without closing; its session lapses; the next leader gets message 2
    clock.now += github.actions.session_idle_timeout + 1
    successor = MessageSession.open(client_for(github, clock), scale_set.id, "leader-2")
    again = successor.get_message(0, 10)
    assert again is not None and again.message_id == second.message_id


def test_an_expired_queue_token_is_refreshed_without_losing_a_message(
    github: FakeGitHub, clock: FakeClock
) -> None:
    client = client_for(github, clock)
    scale_set = client.ensure_scale_set("pool-a", "", ["pool-a"])
    session = MessageSession.open(client, scale_set.id, "me")
    request_id = github.actions.queue_job("/orgs/acme", ["pool-a"], "acme/app", 1)
    github.actions.expire_queue_tokens()
    message = session.get_message(0, 10)
    assert message is not None and message.available[0].runner_request_id == request_id
    assert session.refreshes == 1
    github.actions.expire_queue_tokens()
    assert session.acquire_jobs([request_id]) == [request_id]
    github.actions.expire_queue_tokens()
    session.delete_message(message.message_id)
    assert session.refreshes == 3
    assert github.actions.unacknowledged(scale_set.id) == []


def test_jit_name_conflicts_are_handled_as_arc_does(github: FakeGitHub, clock: FakeClock) -> None:
    client = client_for(github, clock)
    pool_a = client.ensure_scale_set("pool-a", "", ["pool-a"])
    pool_b = client.ensure_scale_set("pool-b", "", ["pool-b"])
    first = client.generate_jit_config(pool_a.id, "runner-1")
    # the same name again in the same scale set: the stale registration is freed
    again = client.generate_jit_config(pool_a.id, "runner-1")
    assert again.runner.id != first.runner.id
    assert [r["name"] for r in github.actions.runners(pool_a.id)] == ["runner-1"]
    # a runner of another scale set with that name is not touched
    with pytest.raises(RunnerExists):
        client.generate_jit_config(pool_b.id, "runner-1")


def test_bad_requests_are_refused_by_the_service(github: FakeGitHub, clock: FakeClock) -> None:
    client = client_for(github, clock)
    connection = client.admin_connection()
    url = f"{connection.url}_apis/runtime/runnerscalesets?runnerGroupId=1"  # no api-version
    response = client.send("GET", "GET /x", url, f"Bearer {connection.token}")
    assert response.status_code == 400
    url = client.service_url(connection.url, "_apis/runtime/runnerscalesets")
    response = client.send("POST", "POST /x", url, f"Bearer {connection.token}", json={"name": ""})
    assert response.status_code == 400
    response = client.send("GET", "GET /x", url + "&runnerGroupId=1", "Bearer wrong")
    assert response.status_code == 401


def test_ghes_without_custom_labels_keeps_the_name_and_says_so(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeGitHub(tokens=[TOKEN], clock=clock, prefix="/api/v3") as github:
        github.actions.custom_labels = False  # GHES < 3.18, or the feature flag off
        client = client_for(github, clock)
        created = client.ensure_scale_set("pool-a", "Default", ["self-hosted", "pool-a"])
        assert created.label_names == ["pool-a"]
        assert "jobs must use runs-on: pool-a" in caplog.text
