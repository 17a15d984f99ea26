# CPU-only image of the Tailor gateway. Keep in step with the Makefile's set-up.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TAILOR_HOST=0.0.0.0 TAILOR_PORT=8000 TAILOR_DATA_DIR=/data HF_HUB_OFFLINE=1

WORKDIR /app
# CPU build of PyTorch first, so sentence-transformers does not pull the CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY resolvers resolvers
COPY embeddings embeddings
COPY cache cache
COPY catalog catalog
COPY profiles profiles
COPY storage storage
COPY segments segments
COPY recommend recommend
COPY demo demo
RUN pip install . && useradd --create-home --uid 10001 tailor && mkdir /data && chown tailor /data

USER tailor
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["tailor", "serve"]
