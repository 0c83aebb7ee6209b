# Slim serving image: an ONNX export served with ONNX Runtime, without torch, timm or torchvision (serving/).
# Same service as api.Dockerfile (uvicorn --factory image_classifier.api.app:create_app on $PORT, uid 1000), a
# fraction of its size and start-up time. Build from the repository root:
#   docker build -f dockerfiles/api-onnx.Dockerfile -t image-classifier-api-onnx .
# The model is an ONNX export (invoke export), mounted (MODEL_PATH names it, default /app/models/model.onnx):
#   docker run --rm -p 8000:8000 -v "$PWD/models:/app/models:ro" image-classifier-api-onnx
# or fetched at start from MODEL_URI (file://, https://, gs://), checked against MODEL_SHA256:
#   docker run --rm -p 8000:8000 -e MODEL_URI=gs://BUCKET/model.onnx -e MODEL_SHA256=... image-classifier-api-onnx
# A checkpoint bundle is refused with a one-line error: serve bundles with api.Dockerfile.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# The serving package's extras: gcs for gs:// model URIs.
ARG EXTRAS=gcs
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /build
# Dependencies first: this layer changes only with serving/pyproject.toml.
COPY serving/pyproject.toml serving/
COPY dockerfiles/pyproject_requirements.py ./
RUN python pyproject_requirements.py serving/pyproject.toml "$EXTRAS" > requirements.txt \
    && pip install -r requirements.txt
COPY src ./src
COPY serving ./serving
RUN pip wheel --no-deps --wheel-dir /wheels ./serving

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="image-classifier-api-onnx" \
      org.opencontainers.image.description="FastAPI service for an image classifier's ONNX export (ONNX Runtime, no torch)"
ARG MODEL_PATH=/app/models/model.onnx
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    MODEL_PATH=${MODEL_PATH} \
    PORT=8000
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /wheels /tmp/wheels
# Compiled once here: the non-root user cannot write __pycache__, and every cold start would compile again.
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels && pip check \
    && python -m compileall -q /opt/venv/lib/python3*/site-packages/image_classifier \
    && ! python -c "import torch" 2>/dev/null
WORKDIR /app
RUN mkdir -p models
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\") or 8000}/health', timeout=4)"]
# A shell, so that the port comes from $PORT at run time (-e PORT=...); exec keeps uvicorn as PID 1 for SIGTERM.
CMD ["sh", "-c", "exec uvicorn --factory image_classifier.api.app:create_app --host 0.0.0.0 --port \"${PORT:-8000}\""]
