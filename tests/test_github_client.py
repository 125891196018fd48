"""The GitHub client against `FakeGitHub` over real sockets: auth, retries, pagination, ETags."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reconciler.github import (
    AppAuth,
    AuthConfigError,
    GitHubClient,
    GitHubError,
    RateLimited,
    RunnerBusy,
    RunnerGroupNotFound,
    Scope,
    TokenAuth,
    auth_from_environment,
)
from reconciler.github.limits import SecondaryLimits, WriteBudget
from reconciler.sandbox.github_server import FakeGitHub

pytestmark = pytest.mark.e2e  # starts servers or processes

ORG = Scope("organization", "acme")
TOKEN = "test-token"


class FakeClock:
    """A settable clock shared by the client's App auth and the server."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=[TOKEN]) as server:
        yield server


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(github: FakeGitHub, waits: list[float]) -> Iterator[GitHubClient]:
    with GitHubClient(github.url, TokenAuth(TOKEN), sleep=waits.append) as c:
        yield c


@pytest.fixture(scope="module")
def app_key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def test_list_runners_follows_pagination_across_three_pages(
    github: FakeGitHub, client: GitHubClient
) -> None:
    for i in range(250):
        version = "2.329.0" if i else None  # a runner that never connected reports none
        github.add_runner("/orgs/acme", f"runner-{i:03d}", busy=i % 2 == 0, version=version)
    runners = client.list_runners(ORG)
    assert (runners[0].version, runners[1].version) == (None, "2.329.0")
    assert [r.name for r in runners] == [f"runner-{i:03d}" for i in range(250)]
    assert runners[0].busy and not runners[1].busy
    assert runners[0].labels == ["self-hosted", "linux"]
    assert runners[0].status == "online" and runners[0].runner_group_id == 1
    assert github.request_log == [("GET", "/orgs/acme/actions/runners")] * 3
    assert client.calls == {"GET /orgs/{org}/actions/runners": 3}


def test_bad_token_is_a_401_and_not_retried(github: FakeGitHub, waits: list[float]) -> None:
    with (
        GitHubClient(github.url, TokenAuth("wrong"), sleep=waits.append) as client,
        pytest.raises(GitHubError) as raised,
    ):
        client.list_runners(ORG)
    assert raised.value.status == 401
    assert str(raised.value) == "GET /orgs/{org}/actions/runners: HTTP 401: Bad credentials"
    assert len(github.request_log) == 1 and waits == []


def test_app_token_fetched_once_reused_and_refreshed_near_expiry(
    app_key: tuple[bytes, bytes], waits: list[float]
) -> None:
    private, public = app_key
    clock = FakeClock()
    with FakeGitHub(tokens=[], token_lifetime=3600, clock=clock) as github:
        github.configure_app(1234, public, installation_id=42)
        auth = AppAuth(1234, private.decode(), 42, clock=clock)
        with GitHubClient(github.url, auth, sleep=waits.append) as client:
            client.list_runners(ORG)
            client.list_runners(ORG)
            clock.now += 3600 - 301  # still more than 5 minutes left: reused
            client.list_runners(ORG)
            clock.now += 2  # less than 5 minutes left: refreshed
            client.list_runners(ORG)
        token_posts = [r for r in github.request_log if r[0] == "POST"]
        assert token_posts == [("POST", "/app/installations/42/access_tokens")] * 2
        assert client.calls["POST /app/installations/{installation_id}/access_tokens"] == 2
        assert client.calls["GET /orgs/{org}/actions/runners"] == 4
        assert "PRIVATE" not in repr(auth)


def test_app_jwt_signed_by_another_key_is_rejected(app_key: tuple[bytes, bytes]) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with FakeGitHub(tokens=[]) as github:
        github.configure_app(1234, app_key[1], installation_id=42)
        with (
            GitHubClient(github.url, AppAuth(1234, other_pem, 42)) as client,
            pytest.raises(GitHubError) as raised,
        ):
            client.list_runners(ORG)
    assert raised.value.status == 401
    assert raised.value.endpoint == "/app/installations/{installation_id}/access_tokens"


def test_5xx_is_retried_with_growing_backoff_then_succeeds(
    github: FakeGitHub, client: GitHubClient, waits: list[float]
) -> None:
    github.add_runner("/orgs/acme", "r1")
    github.fail_next(3, status=502)
    assert [r.name for r in client.list_runners(ORG)] == ["r1"]
    assert len(waits) == 3
    # 0.5 * 2^attempt scaled by 50-100% jitter
    for attempt, wait in enumerate(waits):
        assert 0.25 * 2**attempt <= wait <= 0.5 * 2**attempt
    assert client.calls["GET /orgs/{org}/actions/runners"] == 4


def test_5xx_gives_up_after_max_retries(
    github: FakeGitHub, client: GitHubClient, waits: list[float]
) -> None:
    github.fail_next(10, status=503)
    with pytest.raises(GitHubError) as raised:
        client.list_runners(ORG)
    assert raised.value.status == 503
    assert len(github.request_log) == 5 and len(waits) == 4


def test_network_errors_are_retried_then_reported(waits: list[float]) -> None:
    github = FakeGitHub().start()
    url = github.url
    github.close()  # nothing listens on the port any more
    with (
        GitHubClient(url, TokenAuth(TOKEN), max_retries=2, sleep=waits.append) as client,
        pytest.raises(GitHubError) as raised,
    ):
        client.list_runners(ORG)
    assert raised.value.status == 0 and "network error" in str(raised.value)
    assert len(waits) == 2


def test_retry_after_is_honoured(
    github: FakeGitHub, client: GitHubClient, waits: list[float]
) -> None:
    github.retry_after_next(7)
    assert client.list_runners(ORG) == []
    assert waits == [7.0]


def test_4xx_other_than_rate_limits_is_not_retried(
    github: FakeGitHub, client: GitHubClient, waits: list[float]
) -> None:
    github.fail_next(1, status=403)
    with pytest.raises(GitHubError) as raised:
        client.list_runners(ORG)
    assert raised.value.status == 403 and not isinstance(raised.value, RateLimited)
    assert waits == []


def test_rate_limit_waits_until_reset(
    github: FakeGitHub, client: GitHubClient, waits: list[float]
) -> None:
    github.rate_limit_next(reset_in_seconds=30)
    assert client.list_runners(ORG) == []
    assert len(waits) == 1 and 29 <= waits[0] <= 31.5


def test_rate_limit_beyond_max_wait_raises(github: FakeGitHub, waits: list[float]) -> None:
    github.rate_limit_next(reset_in_seconds=3600)
    with (
        GitHubClient(github.url, TokenAuth(TOKEN), sleep=waits.append, max_wait=60) as client,
        pytest.raises(RateLimited) as raised,
    ):
        client.list_runners(ORG)
    assert raised.value.status == 403 and raised.value.wait > 60
    assert waits == []


def test_etag_makes_an_unchanged_list_a_304(github: FakeGitHub, client: GitHubClient) -> None:
    github.add_runner("/orgs/acme", "r1")
    first = client.list_runners(ORG)
    second = client.list_runners(ORG)
    assert first == second
    assert client.not_modified == {"GET /orgs/{org}/actions/runners": 1}
    github.set_runner_status("/orgs/acme", "r1", "online", busy=True)
    assert client.list_runners(ORG)[0].busy
    assert client.not_modified["GET /orgs/{org}/actions/runners"] == 1


def test_etags_are_kept_per_page(github: FakeGitHub, client: GitHubClient) -> None:
    for i in range(150):
        github.add_runner("/orgs/acme", f"r{i}")
    assert len(client.list_runners(ORG)) == 150
    assert len(client.list_runners(ORG)) == 150
    assert client.not_modified["GET /orgs/{org}/actions/runners"] == 2


def test_delete_runner_busy_idle_and_unknown(github: FakeGitHub, client: GitHubClient) -> None:
    busy = github.add_runner("/orgs/acme", "busy", busy=True)
    idle = github.add_runner("/orgs/acme", "idle")
    with pytest.raises(RunnerBusy) as raised:
        client.delete_runner(ORG, busy)
    assert raised.value.status == 422
    assert raised.value.message == 'Bad request - Runner "busy" is still running a job'
    assert client.delete_runner(ORG, idle) is True
    assert client.delete_runner(ORG, 999_999) is True
    assert [r["name"] for r in github.runners("/orgs/acme")] == ["busy"]
    assert client.calls["DELETE /orgs/{org}/actions/runners/{runner_id}"] == 3


def test_jit_config_registers_an_offline_runner_and_hides_its_secret(
    github: FakeGitHub, client: GitHubClient
) -> None:
    group = github.add_runner_group("/orgs/acme", "ecs")
    assert client.runner_group_id(ORG, "ecs") == group
    assert client.runner_group_id(ORG, "Default") == 1
    jit = client.create_jit_config(ORG, "pool-a-1", group, ["self-hosted", "linux"])
    assert jit.encoded_jit_config and jit.encoded_jit_config not in repr(jit)
    [runner] = client.list_runners(ORG)
    assert (runner.id, runner.name, runner.status, runner.busy) == (
        jit.runner_id,
        "pool-a-1",
        "offline",
        False,
    )
    assert runner.runner_group_id == group
    with pytest.raises(GitHubError) as raised:
        client.create_jit_config(ORG, "pool-a-1", group, ["self-hosted"])
    assert raised.value.status == 409


def test_runner_groups(github: FakeGitHub, client: GitHubClient) -> None:
    enterprise = Scope("enterprise", "big")
    github.add_runner_group("/enterprises/big", "ecs")
    assert client.runner_group_id(enterprise, "ecs") == 2
    with pytest.raises(RunnerGroupNotFound):
        client.runner_group_id(enterprise, "missing")
    repo = Scope("repository", "acme/app")
    assert client.runner_group_id(repo, "Default") == 1
    with pytest.raises(RunnerGroupNotFound):
        client.runner_group_id(repo, "ecs")
    assert client.calls == {"GET /enterprises/{enterprise}/actions/runner-groups": 2}


def test_calls_are_counted_by_endpoint_template(github: FakeGitHub, client: GitHubClient) -> None:
    repo = Scope("repository", "acme/app")
    client.list_runners(repo)
    client.list_runners(Scope("repository", "acme/other"))
    jit = client.create_jit_config(repo, "r", 1, ["x"])
    client.delete_runner(repo, jit.runner_id)
    assert client.calls == {
        "GET /repos/{owner}/{repo}/actions/runners": 2,
        "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig": 1,
        "DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}": 1,
    }


def test_ghes_base_url_with_path_prefix(waits: list[float]) -> None:
    with FakeGitHub(tokens=[TOKEN], prefix="/api/v3") as github:
        assert github.url.endswith("/api/v3")
        for i in range(120):
            github.add_runner("/orgs/acme", f"r{i}")
        with GitHubClient(github.url + "/", TokenAuth(TOKEN), sleep=waits.append) as client:
            assert len(client.list_runners(ORG)) == 120
            jit = client.create_jit_config(ORG, "new", 1, ["linux"])
            assert client.delete_runner(ORG, jit.runner_id)
        assert github.request_log[0] == ("GET", "/orgs/acme/actions/runners")
        assert len(github.request_log) == 4


def test_api_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3/")
    assert GitHubClient(auth=TokenAuth(TOKEN)).api_url == "https://ghe.example.com/api/v3"
    monkeypatch.delenv("GITHUB_API_URL")
    assert GitHubClient(auth=TokenAuth(TOKEN)).api_url == "https://api.github.com"


def test_auth_from_environment(app_key: tuple[bytes, bytes], tmp_path: Path) -> None:
    assert repr(auth_from_environment({"GITHUB_TOKEN": "t"})) == "TokenAuth(token=***)"
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(app_key[0])
    app_env = {
        "GITHUB_APP_ID": "1",
        "GITHUB_APP_PRIVATE_KEY": str(key_file),
        "GITHUB_APP_INSTALLATION_ID": "2",
    }
    assert isinstance(auth_from_environment(app_env), AppAuth)
    pem_env = {**app_env, "GITHUB_APP_PRIVATE_KEY": app_key[0].decode()}
    assert isinstance(auth_from_environment(pem_env), AppAuth)
    with pytest.raises(AuthConfigError, match="GITHUB_APP_INSTALLATION_ID unset"):
        auth_from_environment({"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": str(key_file)})
    with pytest.raises(AuthConfigError, match="set GITHUB_TOKEN"):
        auth_from_environment({})


def test_scope_paths() -> None:
    assert Scope("enterprise", "big").path == "/enterprises/big"
    assert Scope("organization", "acme").path == "/orgs/acme"
    assert Scope("repository", "acme/app").path == "/repos/acme/app"
    with pytest.raises(ValueError):
        Scope("repository", "acme")


def test_a_secondary_rate_limit_pauses_every_thread_using_the_client(
    github: FakeGitHub, client: GitHubClient, waits: list[float]
) -> None:
    """GitHub: on a secondary rate limit, stop making requests until Retry-After passed.
    The executor's bind workers share one client: one told to wait makes all wait."""
    github.retry_after_next(7)
    assert client.list_runners(ORG) == []  # this thread was told to wait, and waited
    assert waits == [7.0]
    other: list[object] = []
    worker = threading.Thread(target=lambda: other.append(client.list_runners(ORG)))
    worker.start()
    worker.join(timeout=30)
    assert other == [[]]
    # the other thread waited out what was left of the pause before its first request
    # (the test's sleep does not pass time, so all of it was left)
    assert len(waits) == 2 and 6.0 < waits[1] <= 7.0
    assert client.list_runners(ORG) == [] and len(waits) == 2  # each pause waited once


def test_jit_configurations_keep_the_write_budget_and_reads_do_not_spend_it(
    github: FakeGitHub,
) -> None:
    """GitHub's content-creation limit (80 a minute in general) kept by the client: what
    every bind worker goes through. A fake clock that the client's sleep advances."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limits = SecondaryLimits(budget=WriteBudget(2, 100), clock=lambda: now[0], sleep=sleep)
    with GitHubClient(
        github.url, TokenAuth(TOKEN), sleep=sleep, limits=limits, max_wait=90
    ) as client:
        for name in ("r-1", "r-2", "r-3"):
            client.create_jit_config(ORG, name, 1, ["self-hosted"])
        assert now[0] == pytest.approx(60.0)  # the 3rd waited for the minute's first place
        client.list_runners(ORG)  # a read takes no write place
        client.create_jit_config(ORG, "r-4", 1, ["self-hosted"])
        assert now[0] == pytest.approx(60.0)  # the 2nd place of the minute since 0 is free
        with pytest.raises(RateLimited, match="not sent: GitHub write budget 2/min, 4/h spent"):
            limits.budget = WriteBudget(2, 4)  # the hour is full: the wait is beyond max_wait
            client.create_jit_config(ORG, "r-5", 1, ["self-hosted"])
        assert [r.name for r in client.list_runners(ORG)] == ["r-1", "r-2", "r-3", "r-4"]
