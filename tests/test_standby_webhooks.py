"""Webhooks a standby replica receives are not lost: the leader plans with them, and a
restarted controller still has them (the demand book in DynamoDB, on moto)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.demand import DemandBook, DynamoDemandStore, WebhookReceiver
from reconciler.runners import UnknownRunnerStates
from reconciler.sandbox.scenario import Sandbox
from reconciler.sandbox.server import MotoServer

pytestmark = pytest.mark.e2e  # starts servers or processes

SECRET = b"shared-secret"
POOL = "platform-linux-dind"


def delivery(job_id: int, action: str) -> tuple[dict[str, str], bytes]:
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps(
        {
            "action": action,
            "workflow_job": {
                "id": job_id,
                "run_id": 1,
                "labels": ["self-hosted", "linux", "x64", "dind"],
                "created_at": created,
                "started_at": None,
            },
            "repository": {"full_name": "platform/api", "owner": {"login": "platform"}},
            "organization": {"login": "platform"},
        }
    ).encode()
    headers = {
        "X-GitHub-Event": "workflow_job",
        "X-GitHub-Delivery": f"delivery-{job_id}-{action}",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
    }
    return headers, body


def pending_in_plan(controller: Controller) -> str:
    cycle, _ = controller.reconcile("test")
    return next(p.count_reason for p in cycle.plan.pools if p.name == POOL)


@pytest.fixture
def sandbox(specs: Path, moto_server: MotoServer) -> Iterator[Sandbox]:
    """DynamoDB in a moto process of its own, as `sandbox live` and bench/burst.py have it."""
    with Sandbox([specs], server=moto_server, own_dynamodb=True) as running:
        yield running


def test_a_standby_s_webhooks_reach_the_leader_and_survive_a_restart(
    sandbox: Sandbox, specs: Path, moto_server: MotoServer
) -> None:
    clients = sandbox.clients()
    store = DynamoDemandStore(clients.client("dynamodb"))
    store.ensure_table()
    assert sandbox.dynamodb_server is not None
    # the stack's tables were moved to the DynamoDB server; the CLI is pointed there too
    assert moto_server.client("dynamodb").list_tables()["TableNames"] == []
    tables = sorted(sandbox.dynamodb_server.client("dynamodb").list_tables()["TableNames"])
    assert tables == ["ecs-reconciler-demand", "ecs-reconciler-leases"]
    assert (
        sandbox.environment()["AWS_ENDPOINT_URL_DYNAMODB"] == sandbox.dynamodb_server.endpoint_url
    )

    def replica(leader: bool) -> Controller:
        return Controller(
            ControllerSettings(spec_paths=[specs]),
            clients,
            UnknownRunnerStates(),
            is_leader=lambda: leader,
            demand=DemandBook(store),
        )

    leader, standby = replica(True), replica(False)
    assert "pending 0" in pending_in_plan(leader)
    pending_in_plan(standby)  # the standby's first cycle: it knows its pools
    receiver = WebhookReceiver(
        SECRET, standby.demand or DemandBook(store), pools=standby.demand_pools
    )
    for job_id in (1, 2, 3):
        assert receiver.handle(*delivery(job_id, "queued")).status == 200
    assert receiver.handle(*delivery(1, "queued")).message == "duplicate delivery ignored"

    assert "pending 3" in pending_in_plan(leader)  # received by the standby, used by the leader
    assert "pending 3" in pending_in_plan(replica(True))  # a restarted leader has them too
    assert receiver.handle(*delivery(2, "completed")).status == 200  # cancelled while queued
    assert "pending 2" in pending_in_plan(leader)
