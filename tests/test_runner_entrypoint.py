"""The runner image's entrypoint, run for real with bash: it finds its task id through the ECS
task metadata endpoint (a local HTTP server here), waits for its JIT parameter (a fake `aws`
on PATH plays SSM), deletes it, and execs the runner once; without one it gives up, bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "deploy" / "runner-image" / "entrypoint.sh"
TASK_ID = "0123456789abcdef0123456789abcdef"
TASK_ARN = f"arn:aws:ecs:us-east-1:123456789012:task/ci-runners/{TASK_ID}"
PREFIX = "/ecs-reconciler/jit/linux"

pytestmark = [
    pytest.mark.e2e,  # starts processes
    pytest.mark.skipif(shutil.which("curl") is None, reason="the entrypoint needs curl"),
]

# `aws ssm get-parameter|delete-parameter --name NAME ...` over files in $SSM_STORE; the
# parameter appears at the get-parameter call number $BIND_AT (the controller binds late)
FAKE_AWS = r"""#!/usr/bin/env bash
set -euo pipefail
name=""
for ((i = 1; i <= $#; i++)); do
  if [[ "${!i}" == "--name" ]]; then j=$((i + 1)); name="${!j}"; fi
done
file="$SSM_STORE/$(echo "$name" | tr / _)"
case "$2" in
  get-parameter)
    calls=$(($(cat "$SSM_STORE/calls" 2>/dev/null || echo 0) + 1))
    echo "$calls" >"$SSM_STORE/calls"
    echo "$name" >>"$SSM_STORE/asked"
    if [[ -n "${BIND_AT:-}" && "$calls" -ge "$BIND_AT" ]]; then echo jit-config >"$file"; fi
    [[ -f "$file" ]] || { echo "ParameterNotFound" >&2; exit 254; }
    cat "$file" ;;
  delete-parameter) rm "$file" ;;
esac
"""


@pytest.fixture
def metadata() -> Iterator[str]:
    """The ECS task metadata endpoint (v4): GET ${ECS_CONTAINER_METADATA_URI_V4}/task."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"TaskARN": TASK_ARN, "Cluster": "ci-runners"}).encode()
            self.send_response(200 if self.path == "/v4/abc/task" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v4/abc"
    finally:
        server.shutdown()
        server.server_close()


def run_entrypoint(tmp_path: Path, metadata: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir, store, home = tmp_path / "bin", tmp_path / "ssm", tmp_path / "home"
    for directory in (bin_dir, store, home):
        directory.mkdir(exist_ok=True)
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    (home / "run.sh").write_text('#!/usr/bin/env bash\necho "runner started: $*"\n')
    (home / "run.sh").chmod(0o755)
    return subprocess.run(
        ["bash", str(ENTRYPOINT)],
        cwd=home,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "SSM_STORE": str(store),
            "ECS_CONTAINER_METADATA_URI_V4": metadata,
            "RUNNER_JIT_PARAMETER_PREFIX": PREFIX,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_runner_finds_its_parameter_by_task_id_and_waits_for_its_binding(
    tmp_path: Path, metadata: str
) -> None:
    result = run_entrypoint(tmp_path, metadata, BIND_AT="3")  # bound during the third look
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "runner started: --jitconfig jit-config"
    asked = (tmp_path / "ssm" / "asked").read_text().split()
    assert asked == [f"{PREFIX}/{TASK_ID}"] * 3
    assert list((tmp_path / "ssm").glob("_ecs-reconciler*")) == []  # deleted before the start


def test_a_runner_never_bound_gives_up_after_its_wait(tmp_path: Path, metadata: str) -> None:
    result = run_entrypoint(tmp_path, metadata, RUNNER_JIT_WAIT_SECONDS="1")
    assert result.returncode == 1
    assert f"no JIT configuration at {PREFIX}/{TASK_ID} after 1s" in result.stderr
    assert "runner started" not in result.stdout


def test_a_bad_wait_is_refused(tmp_path: Path, metadata: str) -> None:
    result = run_entrypoint(tmp_path, metadata, RUNNER_JIT_WAIT_SECONDS="soon")
    assert result.returncode == 2
    assert "RUNNER_JIT_WAIT_SECONDS must be a whole number of seconds" in result.stderr


def test_a_task_of_an_earlier_version_still_gets_its_parameter_by_name(
    tmp_path: Path, metadata: str
) -> None:
    (tmp_path / "ssm").mkdir()
    (tmp_path / "ssm" / "_old_parameter").write_text("old-config\n")
    result = run_entrypoint(tmp_path, metadata, RUNNER_JIT_PARAMETER="/old/parameter")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "runner started: --jitconfig old-config"
