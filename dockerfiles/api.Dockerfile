# Serving image: uvicorn --factory image_classifier.api.app:create_app on $PORT (8000). Build from the repository root:
#   docker build -f dockerfiles/api.Dockerfile -t image-classifier-api .
# The model is mounted at run time (MODEL_PATH names it, default /app/models/model.pt):
#   docker run --rm -p 8000:8000 -v "$PWD/models:/app/models:ro" image-classifier-api
# or baked in: --build-arg MODEL=models/best.pt --build-arg MODEL_PATH=/app/models/best.pt
# or fetched at start from MODEL_URI (file://, https://, gs://, a registry reference), checked against MODEL_SHA256:
#   docker run --rm -p 8000:8000 -e MODEL_URI=https://example.com/best.pt -e MODEL_SHA256=... image-classifier-api
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# torch comes from the PyTorch index for TORCH_VARIANT (cpu, cu126, ...) unless TORCH_INDEX_URL names another.
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ARG TORCH_EXTRA_INDEX_URL=
ARG TORCH_PACKAGES="torch torchvision"
# The project's extras to install: serve, and gcs for gs:// model URIs (and the GCS DVC remote).
ARG EXTRAS=serve,gcs
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && pip install --index-url "$TORCH_INDEX_URL" \
        ${TORCH_EXTRA_INDEX_URL:+--extra-index-url $TORCH_EXTRA_INDEX_URL} $TORCH_PACKAGES
WORKDIR /build
# Dependencies first: this layer changes only with pyproject.toml.
COPY pyproject.toml dockerfiles/pyproject_requirements.py ./
RUN python pyproject_requirements.py pyproject.toml "$EXTRAS" > requirements.txt && pip install -r requirements.txt
COPY README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels .

# An optional model file from the build context (MODEL, a path such as models/best.pt) to bake into the image.
FROM ${PYTHON_IMAGE} AS model
ARG MODEL=
COPY . /context
RUN mkdir -p /models \
    && if [ -n "$MODEL" ]; then cp "/context/$MODEL" /models/ || { echo "error: MODEL=$MODEL is not in the build context" >&2; exit 1; }; fi

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="image-classifier-api" \
      org.opencontainers.image.description="FastAPI service for a trained image classifier bundle or ONNX export"
ARG MODEL_PATH=/app/models/model.pt
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    MPLCONFIGDIR=/tmp/matplotlib \
    MODEL_PATH=${MODEL_PATH} \
    PORT=8000
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels && pip check
WORKDIR /app
COPY --from=model /models ./models
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\") or 8000}/health', timeout=4)"]
# A shell, so that the port comes from $PORT at run time (-e PORT=...); exec keeps uvicorn as PID 1 for SIGTERM.
CMD ["sh", "-c", "exec uvicorn --factory image_classifier.api.app:create_app --host 0.0.0.0 --port \"${PORT:-8000}\""]
