# syntax=docker/dockerfile:1
# One image for every marlops entry point, chosen by the container's command:
#   marlops serve agent NAME … | marlops serve decision … | marlops drift … | marlops webhook serve … |
#   marlops train … (torchrun under a TrainJob/PyTorchJob) | the Kubeflow pipeline steps (python3 -m kfp…)
# Build: docker build -t ghcr.io/marlops/marlops:0.1.0 .
# GPU training variant (PyPI's Linux torch wheel is the CUDA build):
#   docker build --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t ghcr.io/marlops/marlops:0.1.0-cuda .
# Pin the base by digest as well: --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a virtual environment with the package and its pinned dependencies
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY constraints.txt ./
# torch first, from the CPU wheel index: constraints.txt pins the version (torch==2.13.0 matches 2.13.0+cpu),
# and without this pip would take PyPI's CUDA build (several GB) for the CPU serving image.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "$(grep '^torch==' constraints.txt)"
COPY pyproject.toml README.md ./
COPY src ./src
# The package, installed once (not editable), every dependency pinned by constraints.txt.
RUN pip install --no-cache-dir -c constraints.txt . \
    && python -c "import marlops.cli"

# ---- runtime: the same base, the venv, the data folders the package reads; no compilers, no root
FROM ${PYTHON_IMAGE} AS runtime
# UID/GID 10001: the chart's podSecurityContext.runAsUser (tests/test_deploy.py keeps them equal).
RUN groupadd --system --gid 10001 marlops \
    && useradd --system --uid 10001 --gid marlops --home-dir /home/marlops --create-home \
       --shell /usr/sbin/nologin marlops
COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/marlops
# What the package finds beside its source in a checkout; here found through the env vars below.
COPY models ./models
COPY monitoring ./monitoring
COPY feature_repo ./feature_repo
COPY components ./components
COPY pipelines ./pipelines
COPY manifests ./manifests
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MARLOPS_MODELS_DIR=/opt/marlops/models \
    MARLOPS_PIPELINES_ROOT=/opt/marlops \
    MARLOPS_MANIFESTS_DIR=/opt/marlops/manifests/serving \
    HOME=/home/marlops
# Numeric, so Kubernetes can verify runAsNonRoot without resolving the name.
USER 10001:10001
# KServe: HTTP 8080 (REST, /metrics, health), gRPC 8081; the retrain trigger: 8080.
EXPOSE 8080 8081
ENTRYPOINT ["marlops"]
CMD ["--help"]
