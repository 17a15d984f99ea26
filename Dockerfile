# CPU-only image of the Tailor gateway, in two stages (tests/test_dockerfile.py checks this file).
#   docker build -t tailor .      docker run -p 8000:8000 -v tailor-data:/data tailor
# build:   a virtualenv with the CPU build of PyTorch, then the dependencies from pyproject.toml
#          (cached layers: they are rebuilt only when pyproject.toml changes), then Tailor itself.
# runtime: python slim + the virtualenv; no compiler, no pip cache, a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/tailor
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/tailor
ENV PATH=/opt/tailor/bin:$PATH
WORKDIR /src
# The CPU build of PyTorch first, so sentence-transformers does not pull the multi-GB CUDA one.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# Dependencies only (not the code): this layer stays cached while only the code changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install -r requirements.txt
COPY . .
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
# libgomp: the OpenMP runtime FAISS and LightGBM load (the only system library they need).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 tailor \
 && mkdir /data && chown tailor:tailor /data
COPY --from=build /opt/tailor /opt/tailor
ENV PATH=/opt/tailor/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TAILOR_HOST=0.0.0.0 TAILOR_PORT=8000 TAILOR_DATA_DIR=/data HF_HUB_OFFLINE=1 \
    TAILOR_LOG_FORMAT=json
USER tailor
WORKDIR /home/tailor
VOLUME ["/data"]
EXPOSE 8000
# Ready, not merely alive: /readyz answers 503 (naming what is down) until the store, the
# ingest writer and the item index are up.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"]
# SIGTERM: uvicorn stops accepting, drains in-flight requests (TAILOR_SHUTDOWN_GRACE_S), then
# the ingest queue is committed and the store closed.
STOPSIGNAL SIGTERM
CMD ["tailor", "serve"]
