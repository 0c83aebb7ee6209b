# Training image. Build from the repository root:
#   docker build -f dockerfiles/train.Dockerfile -t image-classifier-train .
# Run (arguments are Hydra overrides; data, models and outputs are volumes):
#   docker run --rm -v "$PWD/outputs:/app/outputs" image-classifier-train trainer.max_epochs=1
# CUDA build: --build-arg TORCH_VARIANT=cu126, then `docker run --gpus all ...`.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# torch comes from the PyTorch index for TORCH_VARIANT (cpu, cu126, ...) unless TORCH_INDEX_URL names another.
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ARG TORCH_EXTRA_INDEX_URL=
ARG TORCH_PACKAGES="torch torchvision"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && pip install --index-url "$TORCH_INDEX_URL" \
        ${TORCH_EXTRA_INDEX_URL:+--extra-index-url $TORCH_EXTRA_INDEX_URL} $TORCH_PACKAGES
WORKDIR /build
# Dependencies first: this layer changes only with pyproject.toml.
COPY pyproject.toml dockerfiles/pyproject_requirements.py ./
RUN python pyproject_requirements.py pyproject.toml > requirements.txt && pip install -r requirements.txt
COPY README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="image-classifier-train" \
      org.opencontainers.image.description="Fine-tune timm image classifiers; arguments are Hydra overrides"
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROJECT_ROOT=/app \
    HOME=/home/app \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels && pip check
WORKDIR /app
COPY configs ./configs
RUN mkdir -p data models outputs && chown app:app data models outputs
USER app
# Datasets, model bundles and run outputs live outside the image. The W&B key is never baked in:
# pass it at run time with -e WANDB_API_KEY (and -e WANDB_MODE=online to upload live).
VOLUME ["/app/data", "/app/models", "/app/outputs"]
ENTRYPOINT ["python", "-m", "image_classifier.train"]
CMD []
