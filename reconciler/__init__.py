"""ecs-reconciler: a level-triggered reconciler for GitHub Actions runners on Amazon ECS."""

__version__ = "0.1.0"
