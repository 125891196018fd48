"""Sandbox: a fake AWS account (moto over HTTP), seeded infrastructure and a simulated ECS agent.

``server`` runs moto's HTTP server, ``infrastructure`` seeds what Terraform would create, and
``agent`` registers Auto Scaling instances as ECS container instances, so that the reconciler can
be exercised end to end against real boto3 calls without an AWS account.
"""
