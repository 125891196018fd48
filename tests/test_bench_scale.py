"""The scale benchmark's claim, on moto: AWS calls per cycle grow with tasks / 100, not tasks."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _sandbox_bench import add_instances, converge, measure_plan, spread, write_specs

from reconciler.sandbox.scenario import Sandbox
from reconciler.sandbox.server import MotoServer


def test_ten_times_the_tasks_costs_one_describe_batch_more(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    specs = tmp_path / "specs"
    write_specs(specs, spread(20, 2))
    with Sandbox([specs], server=moto_server) as sandbox:
        add_instances(sandbox, 200)
        converge(sandbox, specs)
        small = measure_plan(sandbox, specs, repeats=1)
        write_specs(specs, spread(200, 2))
        converge(sandbox, specs)
        large = measure_plan(sandbox, specs, repeats=1)

    assert (small["tasks"], large["tasks"]) == (20, 200)
    for key in ("by_operation", "steady_by_operation"):
        grown = Counter(large[key])
        grown.subtract(small[key])
        # ceil(200 / 100) - ceil(20 / 100): one more DescribeTasks of 100, nothing else
        assert {op: n for op, n in grown.items() if n} == {"ecs:DescribeTasks": 1}
    # real AWS also pages ListTasks: 2 pages of 100 instead of 1
    assert large["calls_real_aws"] - small["calls_real_aws"] == 2
