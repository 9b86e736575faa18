# syntax=docker/dockerfile:1
#
# optout-gateway container image.
#
#   docker build -t optout-gateway .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:2525:2525 \
#       -v optout-data:/var/lib/optout-gateway optout-gateway
#
# Without OPTOUT_REDIS_URL the gateway starts the embedded redis-server (installed below)
# on a unix socket in the data volume; compose.yaml runs a separate Redis instead.
# The gateway runs as UID/GID 10001: a host directory bind-mounted on the data dir instead of a
# named volume must be writable by that UID.
#
# The Debian release is pinned in the tag (bookworm) so that `apt-get install` below resolves
# against a known release, the same one the development machines run.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: wheels for the project and every dependency (all ship manylinux wheels, so no
# compiler is needed). Nothing from this stage reaches the runtime image but /wheels.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY handlers/ handlers/
COPY suppression/ suppression/

RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
# runtime
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="optout-gateway" \
      org.opencontainers.image.description="SMS and email opt-out compliance gateway" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    OPTOUT_HTTP_HOST=0.0.0.0 \
    OPTOUT_HTTP_PORT=8080 \
    OPTOUT_SMTP_HOST=0.0.0.0 \
    OPTOUT_SMTP_PORT=2525 \
    OPTOUT_DATA_DIR=/var/lib/optout-gateway

# redis-server for the embedded default (OPTOUT_REDIS_URL unset).
# Version pin: "5:7.0.*" fixes the Redis 7.0 series that bookworm ships (the store relies on
# Redis >= 7 listpack hashes) while still taking Debian's security rebuilds
# (5:7.0.15-1~deb12uN). An exact pin such as 5:7.0.15-1~deb12u10 would break the build the
# day the next security update replaces it in the archive (the archive keeps only the newest
# security version), which is why no exact version is written here.
# The quotes keep the shell from globbing "*"; apt itself matches it against the versions.
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'redis-server=5:7.0.*' \
    && rm -rf /var/lib/apt/lists/* \
    && redis-server --version

# Fixed UID/GID (10001, also in USER below) so volume ownership is predictable across rebuilds
# and hosts; well clear of the system UIDs that Debian packages (e.g. redis) allocate.
RUN groupadd --system --gid 10001 optout \
    && useradd --system --no-log-init --uid 10001 --gid optout \
        --home-dir /var/lib/optout-gateway --no-create-home --shell /usr/sbin/nologin optout \
    && mkdir -p /var/lib/optout-gateway \
    && chown optout:optout /var/lib/optout-gateway \
    && chmod 0700 /var/lib/optout-gateway

# Install the wheels straight from the builder stage through a bind mount, so they never
# become a layer of this image. --no-index: nothing is fetched from PyPI here.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/optout_gateway-*.whl \
    && optout-gateway --help > /dev/null

# Holds the embedded Redis AOF, the generated secret key and the local journal: keep it on a
# volume. A new named volume copies this directory's owner (optout) from the image.
VOLUME ["/var/lib/optout-gateway"]
WORKDIR /var/lib/optout-gateway

USER 10001:10001

EXPOSE 8080 2525

# Liveness via the standard library (the image has no curl). urlopen raises, and so exits
# non-zero, on a refused connection, a timeout or any non-2xx status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('OPTOUT_HTTP_PORT', '8080') + '/healthz', timeout=4)"]

# The gateway drains on SIGTERM and exits 0; it runs as PID 1 and handles the signal itself,
# and it stops its embedded redis-server (its only child) on the way out.
STOPSIGNAL SIGTERM

ENTRYPOINT ["optout-gateway"]
CMD ["serve"]
