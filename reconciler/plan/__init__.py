"""The pure core: desired state, normalization, the planner, the plan and its renderings."""
