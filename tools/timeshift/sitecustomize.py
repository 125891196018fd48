"""Shift this Python process's wall clock by ECS_RECONCILER_CLOCK_OFFSET seconds (if set).

On PYTHONPATH (tools/timeshift.py puts it there), every Python process the command starts
imports it: the test runner, moto's server, the CLI in subprocesses. They all travel by the
same offset with time-machine (`tick=True`: the shifted clock keeps running), so they agree
with each other, while time.monotonic(), sleeps and lock timeouts stay real.
"""

import os

_offset = os.environ.get("ECS_RECONCILER_CLOCK_OFFSET")
if _offset:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
