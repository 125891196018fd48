# ecs-reconciler controller image.
#   docker build -t ecs-reconciler:dev .
#   docker run --rm -p 8080:8080 -e AWS_REGION=eu-west-1 ecs-reconciler:dev run --help
# Stage 1 builds wheels for the package and its runtime dependencies (no dev extras);
# stage 2 installs only those wheels, offline, into a slim image run as a non-root user.

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY reconciler ./reconciler
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# git: `run --git-url` clones and polls the spec repository. Debian point releases replace
# package versions, so apt versions are not pinned (the base image tag pins the release).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /home/reconciler reconciler
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels /wheels/ecs_runner_reconciler-*.whl \
    && rm -rf /wheels
USER 10001
WORKDIR /home/reconciler
EXPOSE 8080
# No HEALTHCHECK: ECS ignores it; the task definition's container healthCheck probes /healthz.
ENTRYPOINT ["ecs-reconciler"]
CMD ["run", "--listen", "0.0.0.0:8080"]
