# Agora: one image for every service. `agora serve <domain>` runs one gRPC service,
# `agora serve gateway` the REST/SSE/WebSocket bridge (the default command).
#
#   docker build -t agora .
#   docker run --rm -p 8080:8080 agora                       # the bridge
#   docker run --rm -p 50052:50052 agora serve polls         # one domain

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with Agora and its dependencies (all from wheels) ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY deployments/docker/install.sh ./deployments/docker/install.sh
COPY clients/python ./clients/python
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
RUN ./deployments/docker/install.sh /opt/agora /src

# ---- runtime: the virtualenv on a clean slim base, no compilers, non-root ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="agora" \
      org.opencontainers.image.description="Agora gRPC services and REST bridge: agora serve <domain|gateway>" \
      org.opencontainers.image.source="https://github.com/agora-mesh/agora"

RUN groupadd --system --gid 10001 agora \
 && useradd --system --uid 10001 --gid agora --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin agora

COPY --from=build /opt/agora /opt/agora

ENV PATH=/opt/agora/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGORA_HOST=0.0.0.0 \
    AGORA_DATA_DIR=/tmp/agora \
    AGORA_LOG_FORMAT=json

USER 10001:10001
WORKDIR /tmp
# bridge, then the ten domains (clients/python/agora/client/mesh.py)
EXPOSE 8080 50051 50052 50053 50054 50055 50056 50057 50058 50059 50060

ENTRYPOINT ["agora"]
CMD ["serve", "gateway"]
