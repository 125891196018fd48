"""Capacity simulation: synthetic `workflow_job` traces and a discrete-event model of ECS and
GitHub that replays a trace under several scaling policies (ours drives the real planner).

Layers, each importing only from those above it in this list:
- `parameters`: the model's timing and sizing constants, with their public sources;
- `trace`: generating, writing and reading traces (JSON lines of webhook payloads);
- `world`: the simulated clock, event queue, instances, runner tasks, GitHub dispatch;
- `policies`: how each compared system scales runners and instances;
- `report`: queue-wait percentiles, hours, SLO share; text, JSON and PNG output.

Nothing here sleeps or talks to the network; the only I/O is reading and writing files.
"""
