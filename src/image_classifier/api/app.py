"""The FastAPI application, built by :func:`create_app`:
``uvicorn --factory image_classifier.api.app:create_app`` with ``MODEL_PATH`` set."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from image_classifier.api.admission import Admission, Overloaded
from image_classifier.api.backends import ModelInfo, Preprocess, eval_preprocess, load_predictor, pixel_forward
from image_classifier.api.batching import Batcher, MicroBatcher, ModelUnavailable
from image_classifier.api.images import ImageLimits, ImageRejected, check_media_type, prepare_request
from image_classifier.api.middleware import ServiceMiddleware
from image_classifier.api.model_process import ModelProcess
from image_classifier.api.model_source import local_model
from image_classifier.api.monitoring import PredictionLog, ServiceMetrics
from image_classifier.api.schemas import ERROR_RESPONSES, Health, Metadata, PredictResponse
from image_classifier.api.settings import ServeSettings
from image_classifier.errors import UserError
from image_classifier.redact import install_log_redaction, redact

log = logging.getLogger(__name__)
router = APIRouter()
# The web page at / and its assets under /static (HTML, CSS and JavaScript, no build step).
STATIC_DIR = Path(__file__).with_name("static")


@dataclass
class Service:
    """Everything a request needs, built once at start-up."""

    settings: ServeSettings
    model: ModelInfo
    preprocess: Preprocess
    batcher: Batcher
    metrics: ServiceMetrics
    prediction_log: PredictionLog
    admission: Admission


def open_model(settings: ServeSettings) -> tuple[ModelInfo, Batcher]:
    """The model ``settings`` name (``MODEL_URI`` fetched first, see :mod:`~image_classifier.api.model_source`),
    and the batcher that runs it: in a child process unless ``settings.model_process`` is false."""
    path, max_wait_s = local_model(settings), settings.max_wait_ms / 1000
    if settings.model_process:
        process = ModelProcess(path, settings.threads, settings.max_batch, max_wait_s)
        return process, process
    predictor = load_predictor(path, settings.threads)
    return predictor, MicroBatcher(pixel_forward(predictor), settings.max_batch, max_wait_s)


def _top_k(probs: np.ndarray, classes: list[str], k: int) -> dict[str, float]:
    order = np.argsort(-probs, kind="stable")[:k]
    return {classes[i]: round(float(probs[i]), 6) for i in order}


def create_app(settings: ServeSettings | None = None, opened: tuple[ModelInfo, Batcher] | None = None) -> FastAPI:
    """The service for ``settings`` (default: from the environment). It opens the model at start-up
    (:func:`open_model`) unless given one already ``opened``, and stops the batcher at shutdown."""
    install_log_redaction()
    settings = settings or ServeSettings.from_env()
    metrics = ServiceMetrics()
    app = FastAPI(
        title="image-classifier",
        summary="Image classification with a fine-tuned timm model.",
        version="1",
        lifespan=lifespan,
        exception_handlers={
            ImageRejected: rejected,
            ModelUnavailable: unavailable,
            Overloaded: overloaded,
            Exception: internal,
        },
    )
    app.state.settings, app.state.metrics, app.state.opened = settings, metrics, opened
    app.state.admission = Admission(settings.max_queue, settings.retry_after_s)
    app.add_middleware(
        ServiceMiddleware, metrics=metrics, max_body=settings.max_request_bytes, admission=app.state.admission
    )
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the model (unless :func:`create_app` was given it) into ``app.state.service``; stop it at shutdown.
    A model that cannot be opened (unreachable URI, wrong checksum, not a bundle) leaves the server up, answering
    503 with the reason (see :func:`service`), so that the platform's health checks report it."""
    settings, metrics = app.state.settings, app.state.metrics
    try:
        model, batcher = app.state.opened or await asyncio.to_thread(open_model, settings)
    except UserError as error:
        app.state.unavailable = redact(f"No model: {error}")
        log.error("error: %s", app.state.unavailable.removeprefix("No model: "))
        yield
        return
    app.state.opened = None
    batcher.observe = metrics.observe_batch
    app.state.service = Service(
        settings=settings,
        model=model,
        preprocess=eval_preprocess(model),
        batcher=batcher,
        metrics=metrics,
        prediction_log=PredictionLog(settings.prediction_log),
        admission=app.state.admission,
    )
    log.info("Serving %s (%s, %d classes)", model.model_name, model.backend, len(model.classes))
    # What start-up made (FastAPI, torch, the model: about 470k objects) lives as long as the server. Frozen,
    # the collector's full passes skip it: unfrozen, each pass stalled every request for about 190 ms.
    gc.freeze()
    yield
    await asyncio.to_thread(batcher.stop)
    app.state.service.prediction_log.close()


async def rejected(request: Request, error: ImageRejected) -> JSONResponse:
    return JSONResponse({"detail": error.detail}, status_code=error.status)


async def unavailable(request: Request, error: ModelUnavailable) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=503)


async def overloaded(request: Request, error: Overloaded) -> JSONResponse:
    return JSONResponse({"detail": error.detail}, status_code=503, headers={"Retry-After": str(error.retry_after_s)})


async def internal(request: Request, error: Exception) -> JSONResponse:
    log.exception("Unhandled error on %s", request.url.path)
    return JSONResponse({"detail": "Internal server error."}, status_code=500)


async def service(request: Request) -> Service:
    """The running service (a dependency of every route); 503 with the reason when the model could not be opened."""
    running = getattr(request.app.state, "service", None)
    if running is None:
        raise ModelUnavailable(getattr(request.app.state, "unavailable", None) or "The model is not loaded.")
    return running


ServiceDep = Annotated[Service, Depends(service)]


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The web page: pick or drop images, see their top classes and the model's metadata."""
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/health", response_model=Health, responses={503: ERROR_RESPONSES[503]})
async def health(svc: ServiceDep) -> Health:
    if svc.batcher.unavailable is not None:
        raise ModelUnavailable(svc.batcher.unavailable)
    return Health(status="ok", model=svc.model.model_name, backend=svc.model.backend)


@router.get("/metadata", response_model=Metadata)
async def metadata(svc: ServiceDep) -> Metadata:
    model, config, limits = svc.model, svc.model.data_config, svc.settings
    return Metadata(
        model=model.model_name,
        backend=model.backend,
        classes=model.classes,
        input_size=list(config["input_size"]),
        mean=list(config["mean"]),
        std=list(config["std"]),
        interpolation=str(config.get("interpolation", "bilinear")),
        crop_pct=float(config.get("crop_pct", 1.0)),
        lineage=model.lineage,
        limits={
            "max_batch": limits.max_batch,
            "max_wait_ms": limits.max_wait_ms,
            "max_files": limits.max_files,
            "max_upload_bytes": limits.max_upload_bytes,
            "max_pixels": limits.max_pixels,
            "max_aspect_ratio": limits.max_aspect_ratio,
            "max_request_pixels": limits.max_request_pixels,
            "max_queue": limits.max_queue,
        },
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics(svc: ServiceDep) -> Response:
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES)
async def predict(
    request: Request,
    svc: ServiceDep,
    file: Annotated[UploadFile | None, File(description="one image")] = None,
    files: Annotated[list[UploadFile] | None, File(description="several images, predicted as a batch")] = None,
    top_k: Annotated[int, Query(ge=1, le=1000, description="how many class probabilities to return")] = 3,
) -> JSONResponse:
    parts = ([file] if file is not None else []) + list(files or [])
    with svc.admission.admit(len(parts)):
        uploads = await read_uploads(request, parts, svc.settings)
        stats, probabilities = await classify(svc, uploads)
    return answer(svc, [name for name, _ in uploads], stats, probabilities, top_k)


async def read_uploads(request: Request, uploads: list[UploadFile], limits: ServeSettings) -> list[tuple[str, bytes]]:
    """Each uploaded image's file name and bytes, checked against the request's media type and the limits."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media and media != "multipart/form-data":
        raise HTTPException(415, f"Send multipart/form-data with the image in field 'file', not '{media}'.")
    if not uploads:
        raise HTTPException(422, "Missing field: send an image in the multipart field 'file' (or several in 'files').")
    if len(uploads) > limits.max_files:
        raise HTTPException(400, f"{len(uploads)} files is over the limit of {limits.max_files} per request.")
    blobs = []
    for i, upload in enumerate(uploads):
        name = upload.filename or f"upload-{i}"
        check_media_type(upload.content_type, name)
        data = await upload.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise ImageRejected(413, f"{name}: over the {limits.max_upload_bytes}-byte limit per file.")
        blobs.append((name, data))
    return blobs


async def classify(svc: Service, uploads: list[tuple[str, bytes]]) -> tuple[list[dict[str, float]], list[np.ndarray]]:
    """Decode and preprocess ``uploads`` in a worker thread, then predict them in the batcher: each image's
    statistics (empty unless the prediction log is on) and class probabilities."""
    settings, with_stats, pixels = svc.settings, svc.prediction_log.enabled, svc.preprocess.pixels
    limits = ImageLimits(
        settings.max_upload_bytes, settings.max_pixels, settings.max_aspect_ratio, settings.max_request_pixels
    )
    with svc.batcher.expecting(len(uploads)):
        prepared = await run_in_threadpool(prepare_request, uploads, pixels, limits, with_stats)
        pending = [asyncio.wrap_future(svc.batcher.submit(array)) for array, _ in prepared]
    probabilities = await asyncio.gather(*pending)
    return [stats for _, stats in prepared], list(probabilities)


def answer(
    svc: Service, names: list[str], stats: list[dict[str, float]], probabilities: list[np.ndarray], top_k: int
) -> JSONResponse:
    """The response for the predicted images; each prediction is also counted and written to the prediction log."""
    classes = svc.model.classes
    k = min(top_k, len(classes))
    predictions = []
    for name, image_stats, probs in zip(names, stats, probabilities, strict=True):
        best = int(np.argmax(probs))
        prediction = {"label": classes[best], "confidence": float(probs[best]), "top_k": _top_k(probs, classes, k)}
        svc.metrics.predictions.labels(prediction["label"]).inc()
        svc.prediction_log.write(svc.model.model_name, name, image_stats, prediction)
        predictions.append({"filename": name, **prediction})
    # Built as plain JSON (the shape is PredictResponse's, as documented) to keep per-request work small.
    return JSONResponse({"model": svc.model.model_name, "predictions": predictions})
