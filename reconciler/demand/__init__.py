"""Demand: which jobs wait for a runner, per pool.

Sources feed job events in (`webhook`: GitHub's `workflow_job` deliveries, through the
`writer`'s queue); the book (`book`) counts pending jobs per pool; the store keeps job
states and delivery ids durable and shared between replicas; `redelivery` asks GitHub to
redeliver the webhook deliveries that failed, and `audit` asks GitHub about jobs queued too
long. Imports only from `spec/`, `aws/` and `github/` below it, never from the controller
above.
"""

from .audit import AuditPass, QueuedJobAudit
from .book import DemandBook, PoolDemandSpec, pool_for
from .events import JobEvent
from .redelivery import Redeliverer, RedeliveryPass
from .store import DemandStore, DynamoDemandStore, JobRecord, MemoryDemandStore
from .webhook import WebhookReceiver, WebhookResult, parse_workflow_job
from .writer import DemandWriter

__all__ = [
    "AuditPass",
    "DemandBook",
    "DemandStore",
    "DemandWriter",
    "DynamoDemandStore",
    "JobEvent",
    "JobRecord",
    "MemoryDemandStore",
    "PoolDemandSpec",
    "QueuedJobAudit",
    "Redeliverer",
    "RedeliveryPass",
    "WebhookReceiver",
    "WebhookResult",
    "parse_workflow_job",
    "pool_for",
]
