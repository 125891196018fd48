"""The soak's fault injector: proxies in front of the sandbox's AWS endpoint and its simulated
GitHub that fail requests the way the real services do, and log every call per replica.

Each controller replica reaches AWS and GitHub through its own listener (port) of
`ChaosAws` / `ChaosGitHub`, so the proxies know who sent what. They log every call
(`CallLedger`): who sent it, when it arrived, whether it mutates; and, from the DynamoDB
traffic itself, every successful write of the lease record (who holds it from when). That
is enough to check afterwards, without trusting the replicas, that no replica sent a
mutating request outside its lease (`outside_lease`).

Faults (each request draws from one seeded random generator while `Injector.enabled`):

- AWS, as documented in the APIs' Common Errors pages (ECS, EC2 Auto Scaling, SSM,
  DynamoDB: `ThrottlingException` HTTP 400, `ServiceUnavailable` 503, `InternalFailure` 500)
  and the error shapes of their protocols: JSON services (ECS, SSM, DynamoDB) answer
  `{"__type": ..., "message": ...}` (DynamoDB's type carries its namespace,
  `com.amazonaws.dynamodb.v20120810#...`); the query services answer XML, Auto Scaling
  `<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate
  exceeded</Message>...`, EC2 `<Response><Errors><Error><Code>RequestLimitExceeded</Code>...`
  with HTTP 503 (EC2 API reference, "Request throttling"). Also latency before forwarding and
  connection resets (no answer). Injected errors are answered *without* forwarding, except
  `ecs-500-after-runtask`: a RunTask that is performed and then answered 500 (every attempt of
  its client token), as `EcsListingLag.fail_next_run_tasks` does.
- DynamoDB unavailable for a while, for one replica (`outage`): every request from it is
  reset or answered 503 until the outage ends: its lease cannot be renewed.
- GitHub, as its REST documentation describes: 5xx answers; the secondary rate limit, HTTP
  403 with `Retry-After` seconds and the message "You have exceeded a secondary rate limit"
  (docs.github.com, "Rate limits for the REST API": "you will receive a 403 or 429 response
  ... If the retry-after response header is present, you should not retry your request until
  after that many seconds has elapsed"); slow answers (latency before forwarding).

`WebhookBalancer` plays the load balancer in front of the replicas' `/webhook`: it forwards
each delivery to one of the replicas the soak says are up. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from ..aws.clients import is_mutating
from .proxy import ECS_TARGET, Answer, EcsListingLag, ForwardingProxy

#: X-Amz-Target prefixes of the JSON-protocol services the controller calls
JSON_TARGETS = {
    ECS_TARGET: "ecs",
    "AmazonSSM.": "ssm",
    "DynamoDB_20120810.": "dynamodb",
}
#: query-protocol services whose error document is EC2's `<Response><Errors>` shape
EC2_SHAPE = frozenset({"ec2"})
#: DynamoDB writes are made by every replica by design (the lease, the demand book): they are
#: not fenced and not checked against the lease
UNFENCED_SERVICES = frozenset({"dynamodb"})
SECONDARY_RATE_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


@dataclass(frozen=True)
class FaultRates:
    """Probabilities per request, and the bounds of injected delays (seconds)."""

    throttle: float = 0.0
    server_error: float = 0.0
    reset: float = 0.0
    latency: float = 0.0
    delay: tuple[float, float] = (0.1, 1.5)
    retry_after: tuple[int, int] = (1, 3)  # GitHub's secondary limit

    def __post_init__(self) -> None:
        rates = (self.throttle, self.server_error, self.reset, self.latency)
        if any(not 0 <= rate <= 1 for rate in rates) or sum(rates) > 1:
            raise ValueError(f"fault rates must be within [0, 1] and add up to <= 1: {rates}")
        if not 0 <= self.delay[0] <= self.delay[1] or self.retry_after[0] <= 0:
            raise ValueError(f"bad delay bounds {self.delay} or Retry-After {self.retry_after}")


#: what the soak injects by default: a few percent of every kind
AWS_FAULTS = FaultRates(throttle=0.04, server_error=0.02, reset=0.01, latency=0.05)
DYNAMODB_FAULTS = FaultRates(throttle=0.01, server_error=0.01)
GITHUB_FAULTS = FaultRates(throttle=0.01, server_error=0.03, latency=0.05, delay=(0.2, 3.0))


@dataclass(frozen=True)
class Call:
    """One request a replica sent, as the proxy saw it arrive (monotonic seconds)."""

    at: float
    listener: str
    identity: str  # the replica process's lease identity when it was sent
    service: str  # ecs, ssm, autoscaling, ec2, dynamodb, github
    operation: str  # RunTask, POST /orgs/x/actions/runners/generate-jitconfig ...
    mutating: bool


@dataclass(frozen=True)
class LeaseWrite:
    """A successful write of the lease record: from `at` (when it was forwarded to DynamoDB)
    the record names `holder` ("" once released)."""

    at: float
    holder: str


def outside_lease(
    calls: Sequence[Call], writes: Sequence[LeaseWrite], lease_duration: float
) -> list[Call]:
    """The mutating calls (of fenced services) sent while their replica did not hold the lease:
    the last lease write before the call names another holder (or none), or is older than a
    lease duration (nobody renewed it: it may be taken)."""
    ordered = sorted(writes, key=lambda write: write.at)
    moments = [write.at for write in ordered]
    bad = []
    for call in calls:
        if not call.mutating or call.service in UNFENCED_SERVICES:
            continue
        index = _last_at_or_before(moments, call.at)
        latest = ordered[index] if index is not None else None
        if latest is None or latest.holder != call.identity or call.at - latest.at > lease_duration:
            bad.append(call)
    return bad


def _last_at_or_before(moments: Sequence[float], at: float) -> int | None:
    low, high = 0, len(moments)
    while low < high:
        middle = (low + high) // 2
        if moments[middle] <= at:
            low = middle + 1
        else:
            high = middle
    return low - 1 if low else None


class CallLedger:
    """Every call the proxies saw and every lease write, thread-safe."""

    def __init__(self, lease_table: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_table = lease_table
        self.clock = clock
        self.identities: dict[str, str] = {}  # listener -> the identity of its process now
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.lease_writes: list[LeaseWrite] = []
        self.last_mutation: dict[str, float] = {}  # listener -> when it last mutated (fenced)

    def record(self, listener: str, service: str, operation: str, mutating: bool) -> Call:
        call = Call(
            self.clock(), listener, self.identities.get(listener, listener), service, operation,
            mutating,
        )  # fmt: skip
        with self._lock:
            self.calls.append(call)
            if mutating and service not in UNFENCED_SERVICES:
                self.last_mutation[listener] = call.at
        return call

    def lease_written(self, at: float, request: bytes) -> None:
        """A DynamoDB write that succeeded: note it if it wrote the lease record."""
        holder = lease_holder_written(request, self.lease_table)
        if holder is not None:
            with self._lock:
                self.lease_writes.append(LeaseWrite(at, holder))

    def violations(self, lease_duration: float, before: float | None = None) -> list[Call]:
        """Mutating calls outside their replica's lease (sent before `before`, if given)."""
        with self._lock:
            calls = [c for c in self.calls if before is None or c.at < before]
            writes = list(self.lease_writes)
        return outside_lease(calls, writes, lease_duration)

    def mutations(self) -> Counter[str]:
        """Fenced mutating calls by identity."""
        with self._lock:
            return Counter(
                c.identity for c in self.calls if c.mutating and c.service not in UNFENCED_SERVICES
            )


def lease_holder_written(request: bytes, table: str) -> str | None:
    """The holder an UpdateItem of the lease table sets (":me"; "" for ":nobody", a release),
    or None when the request is not a write of that table."""
    try:
        document = json.loads(request or b"{}")
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("TableName") != table:
        return None
    values = document.get("ExpressionAttributeValues", {})
    if ":nobody" in values:
        return ""
    me = values.get(":me", {}).get("S")
    return me if isinstance(me, str) else None


def aws_operation(headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """(service, operation) of a signed AWS request: JSON protocols name it in X-Amz-Target,
    query protocols in the form's `Action` and the service in the signature's scope."""
    lowered = {k.lower(): v for k, v in headers.items()}
    target = lowered.get("x-amz-target", "")
    for prefix, service in JSON_TARGETS.items():
        if target.startswith(prefix):
            return service, target.removeprefix(prefix)
    # Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, ...
    credential = lowered.get("authorization", "").partition("Credential=")[2].split(",")[0]
    parts = credential.split("/")
    service = parts[3] if len(parts) >= 5 else "unknown"
    action = parse_qs(body.decode("utf-8", "replace")).get("Action", ["Unknown"])[0]
    return service, action


def aws_error(service: str, kind: str) -> Answer:
    """The error answer of `service` for `kind` (throttle, server-error, unavailable), in its
    protocol's shape."""
    request_id = str(uuid.uuid4())
    if service in ("ecs", "ssm", "dynamodb"):
        status, code, message = {
            "throttle": (400, "ThrottlingException", "Rate exceeded"),
            "server-error": (
                500,
                "ServerException" if service == "ecs" else "InternalServerError",
                "Internal error (injected)",
            ),
            "unavailable": (503, "ServiceUnavailable", "Service unavailable (injected)"),
        }[kind]
        if service == "dynamodb":
            code = f"com.amazonaws.dynamodb.v20120810#{code}"
        content = "application/x-amz-json-1.0" if service == "dynamodb" else (
            "application/x-amz-json-1.1"
        )  # fmt: skip
        body = json.dumps({"__type": code, "message": message}).encode()
        return Answer(
            status,
            [("Content-Type", content), ("x-amzn-RequestId", request_id)],
            body,
        )
    if service in EC2_SHAPE:
        status, code, message = {
            "throttle": (503, "RequestLimitExceeded", "Request limit exceeded."),
            "server-error": (500, "InternalError", "An internal error has occurred (injected)."),
            "unavailable": (503, "Unavailable", "The server is overloaded (injected)."),
        }[kind]
        xml = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            f"</Errors><RequestID>{request_id}</RequestID></Response>"
        )
    else:  # Auto Scaling and the other query services
        status, side, code, message = {
            "throttle": (400, "Sender", "Throttling", "Rate exceeded"),
            "server-error": (500, "Receiver", "InternalFailure", "Internal failure (injected)"),
            "unavailable": (503, "Receiver", "ServiceUnavailable", "Unavailable (injected)"),
        }[kind]
        xml = (
            f"<ErrorResponse><Error><Type>{side}</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        )
    return Answer(status, [("Content-Type", "text/xml")], xml.encode())


def github_error(kind: str, retry_after: int = 1) -> Answer:
    """GitHub's answer for `kind`: server-error (502) or throttle (the secondary rate limit:
    403 with Retry-After)."""
    headers = [("Content-Type", "application/json; charset=utf-8")]
    if kind == "throttle":
        body = {
            "message": SECONDARY_RATE_LIMIT_MESSAGE,
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        }
        return Answer(403, [*headers, ("Retry-After", str(retry_after))], json.dumps(body).encode())
    return Answer(502, headers, json.dumps({"message": "Server Error"}).encode())


@dataclass
class Injector:
    """The seeded source of every fault decision, and the count of faults by kind."""

    seed: int
    enabled: bool = False
    faults: Counter[str] = field(default_factory=Counter)
    outages: dict[str, float] = field(default_factory=dict)  # listener -> DynamoDB down until
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self, rates: FaultRates) -> tuple[str | None, float]:
        """(fault kind or None, its delay or Retry-After) for one request."""
        with self._lock:
            if not self.enabled:
                return None, 0.0
            roll = self._random.random()
            for kind, rate in (
                ("throttle", rates.throttle),
                ("server-error", rates.server_error),
                ("reset", rates.reset),
                ("latency", rates.latency),
            ):
                if roll < rate:
                    if kind == "throttle":
                        return kind, float(self._random.randint(*rates.retry_after))
                    return kind, self._random.uniform(*rates.delay)
                roll -= rate
            return None, 0.0

    def choice(self, options: Sequence[str]) -> str:
        with self._lock:
            return self._random.choice(options)

    def count(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def down(self, listener: str) -> bool:
        """True while `listener`'s DynamoDB outage lasts."""
        return self.clock() < self.outages.get(listener, 0.0)


class ChaosAws(EcsListingLag):
    """The AWS endpoint as the replicas see it: ECS's listing lag and token idempotency
    (`EcsListingLag`, no lag by default), faults, and the call ledger."""

    def __init__(
        self,
        upstream: str,
        ledger: CallLedger,
        injector: Injector,
        rates: FaultRates = AWS_FAULTS,
        dynamodb_rates: FaultRates = DYNAMODB_FAULTS,
        after_run_task: float = 0.02,  # share of RunTasks performed, then answered 500
    ) -> None:
        super().__init__(upstream, lag=0.0)
        self.ledger, self.injector = ledger, injector
        self.rates, self.dynamodb_rates = rates, dynamodb_rates
        self.after_run_task = after_run_task

    def handle(
        self, listener: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        service, operation = aws_operation(headers, body)
        self.ledger.record(listener, service, operation, is_mutating(operation))
        if service == "dynamodb" and self.injector.down(listener):
            self.injector.count("dynamodb: unavailable (outage)")
            if self.injector.choice(("reset", "unavailable")) == "reset":
                return _reset()
            return aws_error(service, "unavailable")
        rates = self.dynamodb_rates if service == "dynamodb" else self.rates
        kind, amount = self.injector.draw(rates)
        if kind is not None:
            self.injector.count(f"{_family(service)}: {kind}")
        if kind == "reset":
            return _reset()
        if kind in ("throttle", "server-error"):
            return aws_error(service, kind)
        if kind == "latency":
            time.sleep(amount)
        if operation == "RunTask" and self._performed_then_failed():
            self.fail_next_run_tasks(1)
            self.injector.count("aws: 500 after RunTask did the work")
        answer = self.forward(method, path, headers, body)
        if service == "dynamodb" and operation == "UpdateItem" and answer.status == 200:
            self.ledger.lease_written(self.ledger.clock(), body)
        return answer

    def _performed_then_failed(self) -> bool:
        kind, _ = self.injector.draw(FaultRates(server_error=self.after_run_task))
        return kind == "server-error"


class ChaosGitHub(ForwardingProxy):
    """The simulated GitHub as the replicas see it: faults and the call ledger. Links in its
    answers (pagination) name the proxy, as they name api.github.com on GitHub."""

    preserve_host = True

    def __init__(
        self,
        upstream: str,
        ledger: CallLedger,
        injector: Injector,
        rates: FaultRates = GITHUB_FAULTS,
    ) -> None:
        super().__init__(upstream)
        self.ledger, self.injector, self.rates = ledger, injector, rates

    def handle(
        self, listener: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        route = path.split("?", 1)[0]
        self.ledger.record(listener, "github", f"{method} {route}", method not in ("GET", "HEAD"))
        kind, amount = self.injector.draw(self.rates)
        if kind is not None:
            label = "secondary rate limit 403" if kind == "throttle" else kind
            self.injector.count(f"github: {label}")
        if kind == "reset":
            return _reset()
        if kind in ("throttle", "server-error"):
            return github_error(kind, int(amount))
        if kind == "latency":
            time.sleep(amount)
        return self.forward(method, path, headers, body)


class WebhookBalancer(ForwardingProxy):
    """A load balancer in front of the replicas' listeners: each request goes to the next
    replica the soak marked up (`upstreams`), the others are tried if it does not answer."""

    def __init__(self, timeout: float = 5.0) -> None:
        super().__init__("http://127.0.0.1:9", timeout=timeout)
        self.upstreams: list[str] = []  # base URLs, set by the soak
        self._turn = 0

    def handle(
        self, listener: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        upstreams = list(self.upstreams)
        self._turn += 1
        for offset in range(len(upstreams)):
            target = upstreams[(self._turn + offset) % len(upstreams)]
            try:
                return self._send(method, path, headers, body, target)
            except OSError:
                continue
        return Answer(502, [("Content-Type", "text/plain")], b"no healthy replica")


def _family(service: str) -> str:
    return "dynamodb" if service == "dynamodb" else "aws"


def _reset() -> Answer:
    return Answer(0, [], b"", reset=True)
