"""Derive the controller's least-privilege IAM policy from the AWS calls in `reconciler/`.

Static analysis (Python `ast`) finds every boto3 operation the code can call: attribute access
on a client (`self.clients.ecs.describe_tasks`, `ecs = self.clients.ecs; ecs.run_task`,
`self.dynamodb.update_item`), `get_paginator("op")` and `get_waiter("name")`. A client is an
expression whose last name is a client name: the attributes `AwsClients` creates in
`reconciler/aws/clients.py` (`self.ecs = session.client("ecs", ...)`), the name a
`.client("service")` is assigned to, or the service's name when it is passed on unassigned
(the lease's DynamoDB client, kept as `self.dynamodb`).
`reconciler/sandbox/` is excluded: it only talks to a local moto server.

botocore's service model maps each method to its API name exactly (`method_to_api_mapping`)
and gives the IAM prefix (signing name). Attribute names on a client that are neither an
operation nor client plumbing fail the derivation, so the policy cannot silently drift.

Usage:
  python tools/iam_policy.py                   print the policy
  python tools/iam_policy.py --write FILE      regenerate FILE
  python tools/iam_policy.py --check FILE      exit 1 listing missing / extra actions
  python tools/iam_policy.py --read-only       the policy for `plan` (Describe/List/Get only)
  python tools/iam_policy.py --write-template  write it into the CloudFormation template too
  python tools/iam_policy.py --check-template  exit 1 when the template's copy differs

The CloudFormation template (`deploy/cloudformation/ecs-reconciler.yaml`) carries the same
policy as the controller task role's inline policy, between two marker comments; JSON is
YAML, so the block is the rendered policy, indented.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reconciler"
EXCLUDED = ("sandbox",)
READ_PREFIXES = ("Describe", "List", "Get")
CLIENT_PLUMBING = {"meta", "exceptions", "can_paginate", "close"}

MANAGED_BY = {"aws:ResourceTag/ecs-reconciler:managed-by": "ecs-reconciler"}
REQUEST_MANAGED_BY = {"aws:RequestTag/ecs-reconciler:managed-by": "ecs-reconciler"}
LEASE_TABLE = "arn:aws:dynamodb:*:*:table/ecs-reconciler-leases"
DEMAND_TABLE = "arn:aws:dynamodb:*:*:table/ecs-reconciler-demand"  # reconciler/demand/store.py
DEMAND_INDEXES = DEMAND_TABLE + "/index/*"  # the queued-by-pool index, read with Query
OUR_TASK_DEFINITIONS = "arn:aws:ecs:*:*:task-definition/ecs-reconciler-*:*"
JIT_PARAMETERS = "arn:aws:ssm:*:*:parameter/ecs-reconciler/jit/*"  # reconciler/github/jit.py
# The key JIT configurations are encrypted with (run --jit-kms-key; the template creates it)
JIT_KEY_ALIAS = "alias/ecs-reconciler-jit"
TEMPLATE = ROOT / "deploy" / "cloudformation" / "ecs-reconciler.yaml"
TEMPLATE_BEGIN = "# BEGIN derived by tools/iam_policy.py"
TEMPLATE_END = "# END derived by tools/iam_policy.py"

# Permissions an API call needs besides its own action.
IMPLIED = {
    # the pool's task role / execution role are passed to ECS when a task starts
    "ecs:RunTask": ["iam:PassRole"],
    # tags given on create are authorized as ecs:TagResource
    "ecs:CreateCapacityProvider": ["ecs:TagResource"],
    "ecs:RegisterTaskDefinition": ["ecs:TagResource"],
    # PutParameter with Tags is also authorized as AddTagsToResource; a SecureString with a
    # customer managed key needs kms:Encrypt on that key
    "ssm:PutParameter": ["ssm:AddTagsToResource", "kms:Encrypt"],
}

# Reads IAM cannot scope to a resource (Resource must be "*"): ReadOnly, whatever SCOPED says.
UNSCOPABLE_READS = {"ssm:DescribeParameters"}  # `verify` looks secret parameters up by name

# Statement layout: (Sid, actions it may hold, Resource, Condition). An action goes into the
# first statement that lists it; reads go to ReadOnly; anything else to UnscopedWrites.
SCOPED: list[tuple[str, set[str], str | list[str], dict[str, Any] | None]] = [
    (
        "RunOurTaskDefinitionsOnly",
        {"ecs:RunTask"},
        OUR_TASK_DEFINITIONS,
        {"StringEquals": REQUEST_MANAGED_BY},
    ),
    (
        "CreateOnlyWithOwnershipTag",
        {"ecs:CreateCapacityProvider", "ecs:RegisterTaskDefinition"},
        "*",
        {"StringEquals": REQUEST_MANAGED_BY},
    ),
    (
        "ChangeOnlyWhatWeManage",
        {
            "ecs:StopTask",
            "ecs:UpdateCapacityProvider",
            "ecs:DeleteCapacityProvider",
            "ecs:TagResource",
            "ecs:UntagResource",
            # Auto Scaling groups the infrastructure team handed over by tagging them
            "autoscaling:SetDesiredCapacity",
            "autoscaling:TerminateInstanceInAutoScalingGroup",
            "autoscaling:CreateOrUpdateTags",  # the lease epoch of the last resize
        },
        "*",
        {"StringEquals": MANAGED_BY},
    ),
    (
        "PassTaskRolesToEcsOnly",
        {"iam:PassRole"},
        "*",
        {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
    ),
    ("LeaseAndDemandTables", {"dynamodb:*"}, [LEASE_TABLE, DEMAND_TABLE, DEMAND_INDEXES], None),
    ("JitRunnerParameters", {"ssm:*"}, JIT_PARAMETERS, None),
    (
        "JitParameterKeyThroughSsmOnly",
        {"kms:*"},
        "*",
        {
            "StringLike": {"kms:ViaService": "ssm.*.amazonaws.com"},
            "ForAnyValue:StringEquals": {"kms:ResourceAliases": JIT_KEY_ALIAS},
        },
    ),
]
# Tag-on-create: TagResource is also allowed while ECS creates one of our resources.
TAG_ON_CREATE = (
    "TagOnCreate",
    "ecs:TagResource",
    {
        "StringEquals": {
            "ecs:CreateAction": ["CreateCapacityProvider", "RegisterTaskDefinition", "RunTask"],
            **REQUEST_MANAGED_BY,
        }
    },
)


@cache
def _client(service: str) -> Any:
    return _session().client(
        service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


@cache
def _session() -> Any:
    """One session for every service's model (a session keeps the models it loaded)."""
    return boto3.session.Session()


def _operations(service: str) -> dict[str, str]:
    return dict(_client(service).meta.method_to_api_mapping)


def _prefix(service: str) -> str:
    return str(_client(service).meta.service_model.signing_name)


def _modules(package: Path = PACKAGE) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] in EXCLUDED:
            continue
        yield path, _parsed(path, path.stat().st_mtime_ns)


@cache
def _parsed(path: Path, mtime_ns: int) -> ast.Module:
    """A module's syntax tree, parsed once per version of the file (only read afterwards)."""
    return ast.parse(path.read_text(), filename=str(path))


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _string_arg(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def client_names(modules: list[tuple[Path, ast.Module]]) -> dict[str, str]:
    """Client variable/attribute name -> boto3 service name."""
    names: dict[str, str] = {}
    for _, tree in modules:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _last_name(node.func) != "client":
                continue
            service = _string_arg(node)
            if service is None:
                continue
            # The name it is kept under, else the service's own name (`spec.iam` is no client
            # when the IAM client is kept as `self._iam`).
            names[_assigned_to(tree, node) or service] = service
    return names


def _assigned_to(tree: ast.Module, call: ast.Call) -> str | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is call:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            return _last_name(targets[0])
    return None


def _aliases(tree: ast.Module, names: dict[str, str]) -> dict[str, str]:
    """Local aliases such as `ecs = self.clients.ecs` (already covered when the names match)."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute | ast.Name):
            service = names.get(_last_name(node.value) or "")
            target = _last_name(node.targets[0])
            if service and target:
                found[target] = service
    return found


def _waiter_operation(service: str, waiter: str) -> str:
    return str(_client(service).get_waiter(waiter).config.operation)


def derive_calls(package: Path = PACKAGE) -> dict[str, set[str]]:
    """IAM action -> the places (`path:line`) that call it."""
    modules = list(_modules(package))
    names = client_names(modules)
    calls: dict[str, set[str]] = {}
    errors: list[str] = []
    for path, tree in modules:
        local = {**names, **_aliases(tree, names)}
        where_prefix = path.relative_to(package.parent)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            service = local.get(_last_name(node.value) or "")
            if service is None or node.attr in CLIENT_PLUMBING:
                continue
            operations = _operations(service)
            where = f"{where_prefix}:{node.lineno}"
            if node.attr in operations:
                api = operations[node.attr]
            elif node.attr in ("get_paginator", "get_waiter"):
                call = _call_of(tree, node)
                argument = _string_arg(call) if call else None
                if argument is None:
                    errors.append(f"{where}: {node.attr} without a literal name")
                    continue
                if node.attr == "get_paginator":
                    api = operations[argument]
                else:
                    api = _waiter_operation(service, argument)
            else:
                errors.append(f"{where}: {service} client has no operation {node.attr!r}")
                continue
            calls.setdefault(f"{_prefix(service)}:{api}", set()).add(where)
    if errors:
        raise SystemExit("cannot derive the IAM policy:\n  " + "\n  ".join(errors))
    return calls


def _call_of(tree: ast.Module, attribute: ast.Attribute) -> ast.Call | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.func is attribute:
            return node
    return None


def derive_actions(package: Path = PACKAGE) -> list[str]:
    """Every IAM action the controller needs: the API calls plus what they imply."""
    actions = set(derive_calls(package))
    for action in list(actions):
        actions.update(IMPLIED.get(action, []))
    return sorted(actions)


def _is_read(action: str) -> bool:
    return action.split(":", 1)[1].startswith(READ_PREFIXES)


def build_policy(actions: Iterable[str], read_only: bool = False) -> dict[str, Any]:
    """The policy document: statements grouped by how far IAM lets them be scoped."""
    actions = sorted(set(actions))
    if read_only:  # `plan` reads ECS, EC2 and Auto Scaling; lease, demand and JIT parameters
        # are the controller's
        controller_only = ("dynamodb:", "ssm:GetParametersByPath")
        actions = [a for a in actions if _is_read(a) and not a.startswith(controller_only)]
    placed: dict[str, list[str]] = {}
    for action in actions:
        sid = next(
            (
                s
                for s, members, _, _ in SCOPED
                if action not in UNSCOPABLE_READS
                and (action in members or f"{action.split(':')[0]}:*" in members)
            ),
            "ReadOnly" if _is_read(action) else "UnscopedWrites",
        )
        placed.setdefault(sid, []).append(action)
    statements: list[dict[str, Any]] = []

    def add(sid: str, members: list[str], resource: Any, condition: Any = None) -> None:
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Action": members,
            "Resource": resource,
        }
        if condition:
            statement["Condition"] = condition
        statements.append(statement)

    if "ReadOnly" in placed:
        add("ReadOnly", placed["ReadOnly"], "*")
    for sid, _, resource, condition in SCOPED:
        if sid in placed:
            add(sid, placed[sid], resource, condition)
    if "ecs:TagResource" in actions:
        add(TAG_ON_CREATE[0], [TAG_ON_CREATE[1]], "*", TAG_ON_CREATE[2])
    if "UnscopedWrites" in placed:
        add("UnscopedWrites", placed["UnscopedWrites"], "*")
    return {"Version": "2012-10-17", "Statement": statements}


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Every action a policy document allows (statements may repeat one)."""
    found: set[str] = set()
    for statement in policy["Statement"]:
        members = statement["Action"]
        found.update([members] if isinstance(members, str) else members)
    return found


def render(policy: dict[str, Any]) -> str:
    """The committed form: two-space indent, trailing newline."""
    return json.dumps(policy, indent=2) + "\n"


def _template_block(lines: list[str], path: Path) -> tuple[int, int]:
    """Line indexes of the BEGIN and END markers of the derived policy in a template."""
    begins = [i for i, line in enumerate(lines) if line.strip().startswith(TEMPLATE_BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip().startswith(TEMPLATE_END)]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise SystemExit(
            f"{path}: expected one '{TEMPLATE_BEGIN}' line followed by one '{TEMPLATE_END}' line"
        )
    return begins[0], ends[0]


def template_policy(text: str, path: Path = TEMPLATE) -> dict[str, Any]:
    """The policy document between the markers of a template."""
    lines = text.splitlines()
    begin, end = _template_block(lines, path)
    block = "\n".join(lines[begin + 1 : end])
    try:
        policy: dict[str, Any] = json.loads(block)
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path}:{begin + 2 + error.lineno - 1}: not JSON: {error.msg}") from None
    return policy


def render_into_template(text: str, policy: dict[str, Any], path: Path = TEMPLATE) -> str:
    """`text` with the block between the markers replaced by `policy`, at the marker's indent."""
    lines = text.splitlines()
    begin, end = _template_block(lines, path)
    indent = re.match(r"\s*", lines[begin]).group()  # type: ignore[union-attr]
    body = [indent + line for line in json.dumps(policy, indent=2).splitlines()]
    return "\n".join([*lines[: begin + 1], *body, *lines[end:]]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print, write or check the derived policy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="write the policy to FILE")
    group.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the code")
    group.add_argument(
        "--write-template",
        nargs="?",
        const=str(TEMPLATE),
        metavar="FILE",
        help=f"write the policy into the CloudFormation template (default {TEMPLATE.name})",
    )
    group.add_argument(
        "--check-template",
        nargs="?",
        const=str(TEMPLATE),
        metavar="FILE",
        help="exit 1 if the template's copy of the policy differs from the code",
    )
    parser.add_argument("--read-only", action="store_true", help="Describe/List/Get only")
    args = parser.parse_args(argv)
    if args.read_only and (args.write_template or args.check_template):
        parser.error("the template carries the controller's policy, not --read-only")
    policy = build_policy(derive_actions(), read_only=args.read_only)
    text = render(policy)
    if args.write_template:
        template = Path(args.write_template)
        template.write_text(render_into_template(template.read_text(), policy, template))
        return 0
    if args.check_template:
        template = Path(args.check_template)
        if template_policy(template.read_text(), template) != policy:
            print(f"{template}: the controller policy is out of date", file=sys.stderr)
            print(f"fix: python tools/iam_policy.py --write-template {template}", file=sys.stderr)
            return 1
        print(f"{template}: controller policy in sync with reconciler/")
        return 0
    if args.write:
        Path(args.write).write_text(text)
        return 0
    if args.check:
        committed = json.loads(Path(args.check).read_text())
        wanted, have = policy_actions(policy), policy_actions(committed)
        problems = [f"missing: {a}" for a in sorted(wanted - have)]
        problems += [f"extra: {a}" for a in sorted(have - wanted)]
        if not problems and committed != policy:
            problems.append("same actions, but statements differ: regenerate with --write")
        if problems:
            print(f"{args.check} is out of date with reconciler/:", file=sys.stderr)
            print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
            print(f"fix: python tools/iam_policy.py --write {args.check}", file=sys.stderr)
            return 1
        print(f"{args.check}: {len(wanted)} actions, in sync with reconciler/")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
