"""Sandbox: a fake AWS account (moto over HTTP), seeded infrastructure and a simulated ECS agent.

``server`` runs moto's HTTP server, ``scenario`` deploys the production CloudFormation stack into
it and ``infrastructure`` seeds by hand what the stack does not cover, and
``agent`` registers Auto Scaling instances as ECS container instances, so that the reconciler can
be exercised end to end against real boto3 calls without an AWS account.
"""
