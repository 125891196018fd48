#!/usr/bin/env bash
# Entrypoint of the runner image: starts ONE ephemeral just-in-time runner and exits after
# its job (the task then stops; ecs-reconciler starts a fresh one when demand needs it).
#
# ecs-reconciler registers the runner before the task starts and parks its JIT configuration
# in an SSM SecureString; the task only receives the parameter's NAME (RUNNER_JIT_PARAMETER),
# so the secret never appears in ecs:DescribeTasks. The task role needs ssm:GetParameter and
# ssm:DeleteParameter on /ecs-reconciler/jit/* (and kms:Decrypt of the parameter's key).
set -euo pipefail

: "${RUNNER_JIT_PARAMETER:?not set: this image is started by ecs-reconciler}"

jit=$(aws ssm get-parameter --name "$RUNNER_JIT_PARAMETER" --with-decryption \
  --query Parameter.Value --output text)
# single use: delete it now; if that fails the reconciler's garbage collection removes it
aws ssm delete-parameter --name "$RUNNER_JIT_PARAMETER" \
  || echo "warning: could not delete $RUNNER_JIT_PARAMETER" >&2
unset RUNNER_JIT_PARAMETER

# with docker.mode dind, wait for the sidecar's daemon (DOCKER_HOST=tcp://127.0.0.1:2375)
if [[ -n "${DOCKER_HOST:-}" ]]; then
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi

exec ./run.sh --jitconfig "$jit"
