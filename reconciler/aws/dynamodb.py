"""The DynamoDB tables the controller keeps its shared state in (lease, demand)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def ensure_table(dynamodb: Any, table: str, key: str, timeout: float = 30.0) -> None:
    """Create `table` (on-demand, string hash key `key`) if missing and wait until it exists;
    idempotent, and safe when another replica creates it at the same time."""
    try:
        dynamodb.describe_table(TableName=table)
        return
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    try:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(
        TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": max(1, int(timeout))}
    )
