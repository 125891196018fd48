"""GitHub API calls of the runner-state source per reconcile cycle, against the local GitHub.

    .venv/bin/python bench/github_calls.py --runners 10,100,1000

For N runner tasks of one organization pool: the calls of the first cycle, of a second
cycle with nothing changed (answered 304 Not Modified, which GitHub does not count against
the rate limit), and of a cycle after one runner turned busy.
"""

from __future__ import annotations

import argparse

from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.state import RUNNER_NAME_TAG, SCOPE_TAG, ObservedTask
from reconciler.sandbox.github_server import FakeGitHub

TOKEN = "bench-token"


def measure(count: int) -> tuple[int, int, int, int]:
    """(first cycle calls, unchanged cycle calls, of which 304, calls after a change)."""
    with FakeGitHub(tokens=[TOKEN]) as github, GitHubClient(github.url, TokenAuth(TOKEN)) as c:
        tasks = []
        for n in range(count):
            github.add_runner("/orgs/acme", f"runner-{n}")
            tags = {SCOPE_TAG: "organization:acme", RUNNER_NAME_TAG: f"runner-{n}"}
            tasks.append(ObservedTask(f"task/{n}", "ci", "pool", "td", "h", "RUNNING", 0.0, tags))
        source = GitHubRunnerStates(c)
        source.states(tasks)
        first = c.calls.total()
        source.states(tasks)
        unchanged, not_modified = c.calls.total() - first, c.not_modified.total()
        github.set_runner_status("/orgs/acme", "runner-0", "online", busy=True)
        before = c.calls.total()
        source.states(tasks)
        return first, unchanged, not_modified, c.calls.total() - before


def main() -> None:
    """Print a Markdown table of the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", default="10,100,1000")
    args = parser.parse_args()
    print("| runners | first cycle | unchanged cycle (304s) | after one change |")
    print("| ---: | ---: | ---: | ---: |")
    for count in (int(part) for part in args.runners.split(",")):
        first, unchanged, not_modified, changed = measure(count)
        print(f"| {count} | {first} | {unchanged} ({not_modified}) | {changed} |")


if __name__ == "__main__":
    main()
