# syntax=docker/dockerfile:1
# One image for every tmq role; the command picks it (`tmq broker ...`, `tmq sink ...`,
# `tmq api ...`). Build from the repository root:
#   docker build -t tmq:0.1.0 .
# chart/telemetry-platform runs it as uid 10001 with these ports: 9092 (Kafka), 9100
# (metrics and health of broker, sink, producer) and 8080 (REST API).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Builder: the tmq wheel and wheels of all its dependencies.
FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
# Every source directory of [tool.setuptools] package-dir, and the twistd plugin.
COPY tmq ./tmq
COPY protocol ./protocol
COPY api ./api
COPY tools ./tools
COPY twisted ./twisted
RUN pip wheel --no-cache-dir . -w /wheels

# Runtime: the wheels installed offline, nothing of the build left behind.
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 tmq \
    && useradd --uid 10001 --gid tmq --home-dir /var/lib/tmq --no-create-home \
        --shell /usr/sbin/nologin tmq \
    && install -d -o tmq -g tmq /var/lib/tmq
# The wheels, then Twisted's plugin cache: at run time site-packages is not writable.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels tmq \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
# Bytecode was compiled by pip; the root filesystem may be read-only at run time.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/tmq
EXPOSE 9092 9100 8080
ENTRYPOINT ["tmq"]
CMD ["--help"]
