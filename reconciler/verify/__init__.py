"""Verification before anything rolls: images exist, and what pools run on exists.

Read-only and cheap (each image, role, log group... looked up once per run). Sits beside
`aws/` (it uses its clients) and under `cli/`: `ecs-reconciler verify` prints the result tree,
`plan` and `apply` refuse a new revision whose image is missing. It never changes anything.
"""

from .results import Check, Outcome, Report, ResourceChecks
from .verifier import Verifier, registered_images, verify_new_images

__all__ = [
    "Check",
    "Outcome",
    "Report",
    "ResourceChecks",
    "Verifier",
    "registered_images",
    "verify_new_images",
]
