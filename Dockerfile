# syntax=docker/dockerfile:1
# ddb2es as a container: one image for `reindex` workers (Kubernetes Jobs, AWS Batch, ECS).
# See docs/scale-out.md. Build: docker build -t ddb2es:0.1.0 .
#
# The base is pinned to an exact tag; pin its digest as well in your registry mirror
# (FROM python:3.12.7-slim-bookworm@sha256:...) for reproducible builds.
ARG PYTHON_IMAGE=python:3.12.7-slim-bookworm

# --- build: a wheel of ddb2es and wheels of its runtime dependencies (from pyproject.toml) ---
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ddb2es_cli ./ddb2es_cli
# No extras: the image needs neither the local servers ([local]) nor the test tools ([test]).
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: install the wheels, no compilers, no sources, no pip cache ---
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels ddb2es \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/ddb2es ddb2es
# Configuration: mount a file and set DDB2ES_CONFIG (e.g. /etc/ddb2es/ddb2es.toml), or use the
# DDB2ES_* variables. Credentials: the task/pod role (AWS default chain), never baked in.
# With the file state backend, checkpoints go to ./.ddb2es: mount a volume at /home/ddb2es/.ddb2es
# or use the DynamoDB state table (--state-table) so nothing depends on the container's disk.
WORKDIR /home/ddb2es
USER 10001:10001
ENTRYPOINT ["ddb2es"]
CMD ["--help"]
