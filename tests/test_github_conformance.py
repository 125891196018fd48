"""Conformance with GitHub's published descriptions (pinned npm packages, extract in fixtures/).

- every request the client (reconciler/github/) makes is an operation of api.github.com (GHEC
  for enterprise endpoints) and of each GHES description, with declared path and query
  parameters of valid types and a body valid against the operation's request schema;
- every response of the simulated GitHub validates against the operation's response schema
  for its status (a 304 carries no body; an undocumented 4xx must be GitHub's Basic Error);
- every `workflow_job` webhook the sandbox sends validates against `@octokit/openapi-webhooks`;
- every real `workflow_job` example payload (`@octokit/webhooks-examples`) is accepted by the
  receiver and lands in the demand book in the right state.

The extract is refreshed by tools/refresh_github_schemas.py (versions in versions.json).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jsonschema import Draft202012Validator

from reconciler.demand import DemandBook, MemoryDemandStore, PoolDemandSpec, WebhookReceiver
from reconciler.github import AppAuth, GitHubClient, RunnerBusy, Scope, TokenAuth
from reconciler.sandbox import payloads
from reconciler.sandbox.github_server import Exchange, FakeGitHub

from .conftest import wait_for

pytestmark = pytest.mark.e2e  # starts servers or processes

FIXTURES = Path(__file__).parent / "fixtures" / "github"
GHES = ("ghes-3.17", "ghes-3.18", "ghes-3.19")
DOTCOM = ("api.github.com", "ghec")
SCOPES = (
    Scope("enterprise", "acme-corp"),
    Scope("organization", "acme"),
    Scope("repository", "acme/app"),
)


# -- reading the descriptions -----------------------------------------------------------------


def json_schema(node: Any, in_properties: bool = False) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema 2020-12 (`nullable: true` becomes a `null` type)."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {
        key: json_schema(value, key == "properties" and not in_properties)
        for key, value in node.items()
        if in_properties or key != "nullable"
    }
    if in_properties or not node.get("nullable"):
        return converted
    if "type" in converted:
        kinds = converted["type"] if isinstance(converted["type"], list) else [converted["type"]]
        converted["type"] = [*kinds, "null"]
        if "enum" in converted and None not in converted["enum"]:
            converted["enum"] = [*converted["enum"], None]
        return converted
    return {"anyOf": [converted, {"type": "null"}]}


@functools.cache
def rest(description: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "rest" / f"{description}.json").read_text())


@functools.cache
def webhooks(description: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "webhooks" / f"{description}.json").read_text())


def examples() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "examples" / "workflow_job.json").read_text())


def validate(schema: Any, instance: Any, where: str) -> list[str]:
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [
        f"{where}: {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message[:200]}"
        for error in validator.iter_errors(instance)
    ]


def operation_of(description: str, method: str, path: str) -> tuple[dict, dict[str, str]] | None:
    """The operation serving `method path` and its path parameters, or None."""
    for template, methods in rest(description)["paths"].items():
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        if (match := re.fullmatch(pattern, path)) and method.lower() in methods:
            return methods[method.lower()], match.groupdict()
    return None


def typed(value: str, schema: dict[str, Any]) -> Any:
    """A path or query string as the type its schema declares."""
    if schema.get("type") in ("integer", "number"):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def request_problems(description: str, exchange: Exchange) -> list[str]:
    """What is wrong with the request of `exchange` for `description` (empty: conforms)."""
    where = f"{description} {exchange.method} {exchange.path}"
    found = operation_of(description, exchange.method, exchange.path)
    if found is None:
        return [f"{where}: no such operation"]
    operation, path_values = found
    problems = []
    parameters = {(p["in"], p["name"]): p for p in operation.get("parameters", [])}
    for (where_in, name), parameter in parameters.items():
        if parameter.get("required") and where_in == "path" and name not in path_values:
            problems.append(f"{where}: path parameter {name} missing")
        if parameter.get("required") and where_in == "query" and name not in exchange.query:
            problems.append(f"{where}: query parameter {name} missing")
    for place, values in (("path", path_values), ("query", exchange.query)):
        for name, value in values.items():
            parameter = parameters.get((place, name))
            if parameter is None:
                problems.append(f"{where}: undeclared {place} parameter {name}")
                continue
            schema = json_schema(parameter["schema"])
            problems += validate(schema, typed(value, schema), f"{where} {place} {name}")
    body_spec = operation.get("requestBody")
    if body_spec is None:
        if exchange.body:
            problems.append(f"{where}: a body was sent; the operation takes none")
    elif exchange.body or body_spec.get("required"):
        schema = json_schema(body_spec["content"]["application/json"]["schema"])
        try:
            sent = json.loads(exchange.body)
        except ValueError:
            return [*problems, f"{where}: body is not JSON"]
        problems += validate(schema, sent, f"{where} body")
    return problems


BASIC_ERROR = {
    "type": "object",
    "required": ["message", "documentation_url"],
    "properties": {"message": {"type": "string"}, "documentation_url": {"type": "string"}},
}


def response_problems(description: str, exchange: Exchange) -> list[str]:
    """What is wrong with the simulated GitHub's answer in `exchange` for `description`."""
    where = f"{description} {exchange.method} {exchange.path} -> {exchange.status}"
    found = operation_of(description, exchange.method, exchange.path)
    if found is None:
        return [f"{where}: no such operation"]
    responses = found[0]["responses"]
    if exchange.status == 304:  # conditional requests: any GET, never a body
        return [] if exchange.method == "GET" and exchange.response is None else [where]
    documented = responses.get(str(exchange.status))
    if documented is None:
        if 400 <= exchange.status < 600:  # GitHub's generic errors, e.g. 401, 404, 5xx
            return validate(BASIC_ERROR, exchange.response, where)
        return [f"{where}: status not documented"]
    content = documented.get("content", {}).get("application/json")
    if content is None:
        return [] if exchange.response is None else [f"{where}: a body where none is documented"]
    return validate(json_schema(content["schema"]), exchange.response, where)


# -- the exchanges: every client call against the simulated GitHub -----------------------------


def exercise_client(github: FakeGitHub) -> None:
    """Every call the client makes, in each scope, with the answers it can get."""
    github.add_release(
        "actions/runner", "v2.329.0", datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)
    )
    github.add_release(
        "actions/runner",
        "v2.330.0",
        datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC),
        prerelease=True,
    )
    github.add_release(
        "actions/runner",
        "v2.331.0",
        datetime.datetime(2026, 11, 2, tzinfo=datetime.UTC),
        draft=True,
    )
    with GitHubClient(github.url, TokenAuth("test-token"), sleep=lambda _: None) as client:
        for scope in SCOPES:
            if scope.kind != "repository":
                github.add_runner_group(scope.path, "linux")
            for number in range(101):  # two pages
                github.add_runner(scope.path, f"r{number}", version="2.329.0" if number else None)
            github.add_runner(scope.path, "busy-one", busy=True)
            client.list_runners(scope)
            client.list_runners(scope)  # unchanged: 304
            group = client.runner_group_id(
                scope, "linux" if scope.kind != "repository" else "Default"
            )
            if scope.kind != "repository":  # a selected group's members (access drift)
                members = ["acme"] if scope.kind == "enterprise" else ["acme/app", "acme/web"]
                github.set_runner_group_access(scope.path, "linux", members)
                assert client.runner_group(scope, "linux").visibility == "selected"
                assert client.runner_group_members(scope, group) == members
            config = client.create_jit_config(
                scope, f"jit-{scope.kind}", group, ["self-hosted", "linux"]
            )
            client.delete_runner(scope, config.runner_id)  # 204
            client.delete_runner(scope, config.runner_id)  # gone: 404
            busy = next(r for r in client.list_runners(scope) if r.name == "busy-one")
            with pytest.raises(RunnerBusy):
                client.delete_runner(scope, busy.id)  # 422
        client.list_releases("actions/runner")
        client.list_releases("actions/runner")  # 304
        job = next(sandbox_payloads())[1]["workflow_job"]
        github.set_job("acme/app", job)
        assert client.job_status("acme/app", job["id"]) is not None
        assert client.job_status("acme/app", 999) is None  # 404
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    github.configure_app(1234, public, installation_id=42)
    with GitHubClient(github.url, AppAuth(1234, pem, 42), sleep=lambda _: None) as client:
        client.list_runners(SCOPES[1])  # POST access_tokens first
    exercise_hook_deliveries(github, key, pem)


def exercise_hook_deliveries(github: FakeGitHub, key: rsa.RSAPrivateKey, pem: bytes) -> None:
    """The deliveries API of the App's, an organization's and a repository's hook: a refused
    delivery (status code 0) listed and redelivered by the client, then listed with a status
    filter and shown one by one (as an operator would)."""
    payload = payloads.workflow_job_payload(
        "queued",
        job_id=5,
        repository_name="acme/app",
        labels=["self-hosted"],
        created_at=1.7e9,
        started_at=None,
        completed_at=None,
        runner_name=None,
    )
    for owner in (None, "/orgs/acme", "/repos/acme/app"):
        hook = github.add_hook("http://127.0.0.1:9/closed", b"s", owner=owner, installation_id=42)
        failed = github.send_webhook(hook, "workflow_job", payload)
        auth = AppAuth(1234, pem, 42) if owner is None else TokenAuth("test-token")
        with GitHubClient(github.url, auth, sleep=lambda _: None) as client:
            assert [d.id for d in client.hook_deliveries(hook)] == [failed["id"]]
            client.redeliver(hook, failed["id"])
            wait_for(lambda c=client, h=hook: len(c.hook_deliveries(h)) == 2)
        headers = auth.app_authorization() if isinstance(auth, AppAuth) else "Bearer test-token"
        with httpx.Client(base_url=github.url, headers={"Authorization": headers}) as http:
            http.get(f"{hook}/deliveries", params={"per_page": 1, "status": "failure"})
            http.get(f"{hook}/deliveries/{failed['id']}")


@pytest.fixture(scope="module")
def dotcom_exchanges() -> list[Exchange]:
    with FakeGitHub() as github:
        exercise_client(github)
        return github.exchanges


@pytest.fixture(scope="module")
def ghes_exchanges() -> list[Exchange]:
    with FakeGitHub(prefix="/api/v3") as github:
        exercise_client(github)
        return github.exchanges


def operations(exchanges: list[Exchange], description: str) -> set[str]:
    names = set()
    for exchange in exchanges:
        found = operation_of(description, exchange.method, exchange.path)
        if found is not None:
            names.add(found[0]["operationId"])
    return names


def test_every_client_request_is_a_github_com_operation(dotcom_exchanges: list[Exchange]) -> None:
    """api.github.com for organization and repository endpoints, GHEC for enterprise ones."""
    problems = []
    for exchange in dotcom_exchanges:
        description = "ghec" if exchange.path.startswith("/enterprises/") else "api.github.com"
        problems += request_problems(description, exchange)
    assert problems == []
    # the client's whole surface (22: one operation per scope and call, 6 of them the hook
    # deliveries API) and the 3 other deliveries operations the simulated GitHub serves
    assert len(operations(dotcom_exchanges, "ghec")) == 25


@pytest.mark.parametrize("description", GHES)
def test_every_client_request_is_a_ghes_operation(
    ghes_exchanges: list[Exchange], description: str
) -> None:
    problems = [p for exchange in ghes_exchanges for p in request_problems(description, exchange)]
    assert problems == []
    assert len(operations(ghes_exchanges, description)) == 25


@pytest.mark.parametrize("description", DOTCOM + GHES)
def test_every_simulated_github_response_validates(
    dotcom_exchanges: list[Exchange], ghes_exchanges: list[Exchange], description: str
) -> None:
    exchanges = ghes_exchanges if description.startswith("ghes") else dotcom_exchanges
    if description == "api.github.com":  # enterprise endpoints are described in GHEC
        exchanges = [e for e in exchanges if not e.path.startswith("/enterprises/")]
    problems = [p for exchange in exchanges for p in response_problems(description, exchange)]
    assert problems == []
    statuses = {exchange.status for exchange in exchanges}
    assert {200, 201, 202, 204, 304, 404, 422} <= statuses


def test_the_checker_catches_what_github_would_refuse() -> None:
    """The checks themselves: a wrong path, parameter, body and response are each reported."""
    wrong = [
        Exchange("GET", "/orgs/acme/actions/runner", {}, b"", 200, {}),
        Exchange("GET", "/orgs/acme/actions/runners", {"per_page": "many"}, b"", 200, None),
        Exchange("GET", "/orgs/acme/actions/runners", {"limit": "5"}, b"", 200, None),
        Exchange(
            "POST", "/orgs/acme/actions/runners/generate-jitconfig", {}, b'{"name": "x"}', 201, None
        ),
        Exchange(
            "POST",
            "/orgs/acme/actions/runners/generate-jitconfig",
            {},
            b'{"name": "x", "runner_group_id": 1, "labels": []}',
            201,
            None,
        ),
    ]
    assert all(request_problems("api.github.com", exchange) for exchange in wrong)
    groups = {
        "total_count": 1,
        "runner_groups": [{"id": 1, "name": "Default", "visibility": "all"}],
    }
    response = Exchange("GET", "/orgs/acme/actions/runner-groups", {}, b"", 200, groups)
    assert any("runners_url" in p for p in response_problems("api.github.com", response))
    assert response_problems(
        "api.github.com", Exchange("DELETE", "/orgs/a/actions/runners/1", {}, b"", 404, {})
    )


# -- webhooks -----------------------------------------------------------------------------------


def sandbox_payloads() -> Iterator[tuple[str, dict[str, Any]]]:
    """One payload of each kind the sandbox world sends (same builder as `GitHubWorld`)."""
    common = {"job_id": 1001, "repository_name": "acme/app", "labels": ["self-hosted", "linux"]}
    yield (
        "queued",
        payloads.workflow_job_payload(
            "queued",
            **common,
            created_at=1.7e9,
            started_at=None,
            completed_at=None,
            runner_name=None,
        ),
    )
    yield (
        "in_progress",
        payloads.workflow_job_payload(
            "in_progress",
            **common,
            created_at=1.7e9,
            started_at=1.7e9 + 30,
            completed_at=None,
            runner_name="pool-1",
            runner_id=7,
            runner_group=(1, "Default"),
        ),
    )
    yield (
        "completed",
        payloads.workflow_job_payload(
            "completed",
            **common,
            created_at=1.7e9,
            started_at=1.7e9 + 30,
            completed_at=1.7e9 + 90,
            runner_name="pool-1",
            runner_id=7,
            runner_group=(1, "Default"),
            conclusion="success",
        ),
    )
    yield (
        "completed",
        payloads.workflow_job_payload(
            "completed",
            **common,
            created_at=1.7e9,
            started_at=None,
            completed_at=1.7e9 + 10,
            runner_name=None,
            conclusion="cancelled",
        ),
    )


def webhook_schema(description: str, action: str) -> dict[str, Any]:
    document = webhooks(description)
    name = f"workflow-job-{action.replace('_', '-')}"
    return {**document["webhooks"][name], "components": document["components"]}


@pytest.mark.parametrize("description", DOTCOM + GHES)
def test_every_webhook_the_sandbox_sends_validates(description: str) -> None:
    problems = [
        problem
        for action, payload in sandbox_payloads()
        for problem in validate(
            webhook_schema(description, action), payload, f"{description} {action}"
        )
    ]
    assert problems == []


def test_the_webhook_check_catches_a_missing_sender() -> None:
    action, payload = next(sandbox_payloads())
    del payload["sender"]
    payload["workflow_job"]["started_at"] = None
    problems = validate(webhook_schema("api.github.com", action), payload, "queued")
    assert len(problems) == 2


def signed(body: bytes, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "workflow_job",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest(),
    }


@pytest.mark.parametrize("index", range(len(examples())))
def test_every_real_workflow_job_example_is_handled(index: int) -> None:
    """Accepted, parsed as GitHub meant it, and counted by the demand book as its state says."""
    example = examples()[index]["payload"]
    job = example["workflow_job"]
    book = DemandBook(MemoryDemandStore())
    receiver = WebhookReceiver(b"s", book)
    body = json.dumps(example).encode()
    result = receiver.handle(signed(body, f"example-{index}"), body)
    assert result.status == 200, result.message
    owner = example["repository"]["owner"]["login"]
    organization = (example.get("organization") or {}).get("login", owner)
    pool = PoolDemandSpec("pool", "organization", organization, frozenset(job["labels"]))
    recorded = book.job(job["id"])
    assert recorded is not None
    assert (recorded.state, recorded.repository, recorded.labels) == (
        example["action"],
        example["repository"]["full_name"],
        tuple(job["labels"]),
    )
    pending = book.pending([pool])["pool"]
    assert pending == (1 if example["action"] == "queued" else 0)
    assert validate(
        webhook_schema("api.github.com", example["action"]), example, "example"
    ) == [] or (
        "created_at" not in job  # one 2021 example predates the field
    )


def test_conformance_figures(
    dotcom_exchanges: list[Exchange], ghes_exchanges: list[Exchange]
) -> None:
    """The figures the issue asks for, printed with -s (and a floor so they cannot shrink)."""
    checked = {
        "operations (ghec)": len(operations(dotcom_exchanges, "ghec")),
        "exchanges": len(dotcom_exchanges) + len(ghes_exchanges),
        "descriptions": len(DOTCOM + GHES),
        "webhook schemas": 4 * len(DOTCOM + GHES),
        "example payloads": len(examples()),
    }
    print(checked)
    assert checked["example payloads"] >= 8
