#!/usr/bin/env bash
# Entrypoint of the runner image: starts ONE ephemeral just-in-time runner and exits after
# its job (the task then stops; ecs-reconciler starts a fresh one when demand needs it).
#
# ecs-reconciler starts runner tasks in batches (every task of a batch identical) and binds
# each task to its runner only after ECS placed it: it registers the runner and parks its JIT
# configuration in an SSM SecureString named after the task, <prefix>/<task id>. The task
# receives only the prefix (RUNNER_JIT_PARAMETER_PREFIX), so the secret never appears in
# ecs:DescribeTasks; it finds its task id through the ECS task metadata endpoint
# (${ECS_CONTAINER_METADATA_URI_V4}/task -> TaskARN) and waits, at most
# RUNNER_JIT_WAIT_SECONDS (default 120), for its parameter. Tasks started by earlier
# versions receive the whole name instead (RUNNER_JIT_PARAMETER). The task role needs
# ssm:GetParameter and ssm:DeleteParameter on /ecs-reconciler/jit/* (and kms:Decrypt of the
# parameter's key).
set -euo pipefail

if [[ -z "${RUNNER_JIT_PARAMETER:-}" ]]; then
  : "${RUNNER_JIT_PARAMETER_PREFIX:?not set: this image is started by ecs-reconciler}"
  : "${ECS_CONTAINER_METADATA_URI_V4:?not set: this image runs as an ECS task}"
  task_arn=$(curl -fsS --max-time 5 --retry 5 --retry-connrefused \
    "${ECS_CONTAINER_METADATA_URI_V4}/task" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["TaskARN"])')
  RUNNER_JIT_PARAMETER="${RUNNER_JIT_PARAMETER_PREFIX%/}/${task_arn##*/}"
fi

wait_seconds="${RUNNER_JIT_WAIT_SECONDS:-120}"
if ! [[ "$wait_seconds" =~ ^[0-9]+$ ]]; then
  echo "error: RUNNER_JIT_WAIT_SECONDS must be a whole number of seconds, not '$wait_seconds'" >&2
  exit 2
fi
deadline=$((SECONDS + wait_seconds))
until jit=$(aws ssm get-parameter --name "$RUNNER_JIT_PARAMETER" --with-decryption \
  --query Parameter.Value --output text 2>/dev/null); do
  if ((SECONDS >= deadline)); then
    # never bound (the controller could not register this runner): nothing was created
    # for this task, so exiting leaves nothing behind
    echo "error: no JIT configuration at $RUNNER_JIT_PARAMETER after ${wait_seconds}s" >&2
    exit 1
  fi
  sleep 1
done
# single use: delete it now; if that fails the reconciler's garbage collection removes it
aws ssm delete-parameter --name "$RUNNER_JIT_PARAMETER" \
  || echo "warning: could not delete $RUNNER_JIT_PARAMETER" >&2
unset RUNNER_JIT_PARAMETER RUNNER_JIT_PARAMETER_PREFIX

# with docker.mode dind, wait for the sidecar's daemon (DOCKER_HOST=tcp://127.0.0.1:2375)
if [[ -n "${DOCKER_HOST:-}" ]]; then
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi

exec ./run.sh --jitconfig "$jit"
