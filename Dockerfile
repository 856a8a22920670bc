# One image for every bookstore service. The command picks the service:
#   docker build -t bookstore:0.1.0 .
#   docker run --rm -p 8081:8081 bookstore:0.1.0 bookstore serve orchestrator
# Configuration comes only from environment variables (src/bookstore/settings.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The runtime package only (no dev extras), from the lock, installed the way
# `scripts/run` installs it (scripts/install); the sources are not kept.
COPY pyproject.toml uv.lock README.md /tmp/build/
COPY scripts/install /tmp/build/scripts/
COPY src /tmp/build/src
RUN BOOKSTORE_VENV=/opt/bookstore /tmp/build/scripts/install \
    && rm -rf /tmp/build /root/.cache
ENV PATH=/opt/bookstore/bin:$PATH

# A numeric non-root user, so Kubernetes' runAsNonRoot can verify it. The data
# directory and /certs (where Compose's `certs` service writes the certificates)
# are owned by it: a named volume mounted there inherits the owner.
RUN groupadd --system --gid 10001 bookstore \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/bookstore \
       --shell /usr/sbin/nologin bookstore \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/bookstore /certs
USER 10001:10001
WORKDIR /var/lib/bookstore

# In a container every service listens on all interfaces.
ENV BOOKSTORE_BIND_HOST=0.0.0.0 \
    BOOKSTORE_DATA_DIR=/var/lib/bookstore

# 8081 orchestrator (HTTP); 50051-50054 checkout services and queue; 50055-50058 executors.
EXPOSE 8081 50051 50052 50053 50054 50055 50056 50057 50058

# Asks the running service itself: gRPC health (grpc.health.v1) or the
# orchestrator's /healthz. It reads the service from PID 1's command line;
# the package installs it (bookstore.healthcheck, a [project.scripts] entry).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["bookstore-healthcheck"]

CMD ["bookstore", "serve", "orchestrator"]
