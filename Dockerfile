# syntax=docker/dockerfile:1
#
# kcp controller image.
#
#   docker build -t kcp-controller:dev .          # the production image (last stage)
#   docker build --target dev -t kcp-controller .  # what the Tiltfile builds
#
# Stages: `builder` installs the locked dependencies and kcp into a virtualenv;
# `base` is a clean slim Python with only that virtualenv; `dev` adds the source
# tree and a restart supervisor for Tilt's live update; `runtime` (last, the
# default target) is what ships.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, in their own layer: they change far less often than kcp.
# The runtime requirements come from pyproject.toml, every version from the lock
# (constraints.txt). Wheels only: the single exception, etcd3, is pure Python
# and builds without a compiler (there is none in this stage).
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install --constraint constraints.txt --only-binary=:all: --no-binary=etcd3 \
        --requirement requirements.txt \
 && pip check
COPY README.md ./
COPY kcp ./kcp
RUN pip install --constraint constraints.txt --no-deps . \
 && kcp version

FROM ${PYTHON_IMAGE} AS base
# 65532: the conventional "nonroot" UID of distroless images; no passwd entry
# is needed, HOME points at the writable /tmp (an emptyDir in the Deployment).
# Two malloc arenas: less RSS for a many-threaded process (kcp/runtime/malloc.py).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    HOME=/tmp
COPY --from=builder /opt/venv /opt/venv
USER 65532:65532
WORKDIR /tmp

# Tilt's image: kcp's source in /app/kcp ahead of the installed copy on
# sys.path, owned by the runtime user so `live_update` can sync into it, and a
# supervisor that restarts `kcp run` when /tmp/kcp-restart is touched.
FROM base AS dev
ENV PYTHONPATH=/app
COPY --chown=65532:65532 kcp /app/kcp
COPY --chown=65532:65532 hack/tilt/supervisor.py /app/hack/tilt/supervisor.py
ENTRYPOINT ["python", "/app/hack/tilt/supervisor.py", "--", "kcp", "run"]

FROM base AS runtime
LABEL org.opencontainers.image.title="kcp" \
      org.opencontainers.image.description="Cluster API KubeadmControlPlane controller in Python" \
      org.opencontainers.image.licenses="Apache-2.0"
EXPOSE 8080 9440
ENTRYPOINT ["kcp", "run"]
