"""The FastAPI application: ``uvicorn image_classifier.api:app`` with ``MODEL_PATH`` set."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from image_classifier.api.batching import Batcher, MicroBatcher, ModelUnavailable
from image_classifier.api.images import ImageRejected, check_media_type, prepare
from image_classifier.api.middleware import ServiceMiddleware
from image_classifier.api.model_process import ModelProcess
from image_classifier.api.monitoring import PredictionLog, ServiceMetrics
from image_classifier.api.predictors import ModelInfo, load_predictor, pixel_forward
from image_classifier.api.schemas import ERROR_RESPONSES, Health, Metadata, PredictResponse
from image_classifier.api.settings import ServeSettings
from image_classifier.preprocess import BatchedEvalTransform

log = logging.getLogger(__name__)


@dataclass
class Service:
    """Everything a request needs, built once at start-up."""

    settings: ServeSettings
    model: ModelInfo
    preprocess: BatchedEvalTransform
    batcher: Batcher
    metrics: ServiceMetrics
    prediction_log: PredictionLog


def open_model(settings: ServeSettings) -> tuple[ModelInfo, Batcher]:
    """The model ``settings`` name, and the batcher that runs it: in a child process unless
    ``settings.model_process`` is false."""
    path, max_wait_s = settings.require_model(), settings.max_wait_ms / 1000
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
    metrics = ServiceMetrics()
    settings = settings or ServeSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model, batcher = opened if opened is not None else await asyncio.to_thread(open_model, settings)
        batcher.observe = metrics.observe_batch
        app.state.service = Service(
            settings=settings,
            model=model,
            preprocess=BatchedEvalTransform(model.data_config),
            batcher=batcher,
            metrics=metrics,
            prediction_log=PredictionLog(settings.prediction_log),
        )
        log.info("Serving %s (%s, %d classes)", model.model_name, model.backend, len(model.classes))
        # What start-up made (FastAPI, torch, the model: about 470k objects) lives as long as the server. Frozen,
        # the collector's full passes skip it: unfrozen, each pass stalled every request for about 190 ms.
        gc.freeze()
        yield
        await asyncio.to_thread(batcher.stop)
        app.state.service.prediction_log.close()

    app = FastAPI(
        title="image-classifier",
        summary="Image classification with a fine-tuned timm model.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body=settings.max_request_bytes)

    @app.exception_handler(ImageRejected)
    async def rejected(request: Request, error: ImageRejected) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.exception_handler(ModelUnavailable)
    async def unavailable(request: Request, error: ModelUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503)

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        log.exception("Unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "Internal server error."}, status_code=500)

    def service(request: Request) -> Service:
        return request.app.state.service

    @app.get("/health", response_model=Health, responses={503: ERROR_RESPONSES[503]})
    async def health(request: Request) -> Health:
        svc = service(request)
        if svc.batcher.unavailable is not None:
            raise ModelUnavailable(svc.batcher.unavailable)
        return Health(status="ok", model=svc.model.model_name, backend=svc.model.backend)

    @app.get("/metadata", response_model=Metadata)
    async def metadata(request: Request) -> Metadata:
        svc = service(request)
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
            },
        )

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics(request: Request) -> Response:
        return Response(generate_latest(service(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES)
    async def predict(
        request: Request,
        file: Annotated[UploadFile | None, File(description="one image")] = None,
        files: Annotated[list[UploadFile] | None, File(description="several images, predicted as a batch")] = None,
        top_k: Annotated[int, Query(ge=1, le=1000, description="how many class probabilities to return")] = 3,
    ) -> JSONResponse:
        svc = service(request)
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media and media != "multipart/form-data":
            raise HTTPException(415, f"Send multipart/form-data with the image in field 'file', not '{media}'.")
        uploads = ([file] if file is not None else []) + list(files or [])
        if not uploads:
            raise HTTPException(
                422, "Missing field: send an image in the multipart field 'file' (or several in 'files')."
            )
        limits = svc.settings
        if len(uploads) > limits.max_files:
            raise HTTPException(400, f"{len(uploads)} files is over the limit of {limits.max_files} per request.")
        names = [upload.filename or f"upload-{i}" for i, upload in enumerate(uploads)]
        blobs = []
        for upload, name in zip(uploads, names, strict=True):
            check_media_type(upload.content_type, name)
            data = await upload.read(limits.max_upload_bytes + 1)
            if len(data) > limits.max_upload_bytes:
                raise ImageRejected(413, f"{name}: over the {limits.max_upload_bytes}-byte limit per file.")
            blobs.append(data)
        logging_inputs = svc.prediction_log.enabled
        pixels = svc.preprocess.pixels
        with svc.batcher.expecting(len(blobs)):
            prepared = await run_in_threadpool(
                lambda: [
                    prepare(data, name, pixels, limits.max_upload_bytes, limits.max_pixels, logging_inputs)
                    for data, name in zip(blobs, names, strict=True)
                ]
            )
            pending = [asyncio.wrap_future(svc.batcher.submit(array)) for array, _ in prepared]
        probabilities = await asyncio.gather(*pending)
        classes = svc.model.classes
        k = min(top_k, len(classes))
        predictions = []
        for name, (_, stats), probs in zip(names, prepared, probabilities, strict=True):
            best = int(np.argmax(probs))
            prediction = {"label": classes[best], "confidence": float(probs[best]), "top_k": _top_k(probs, classes, k)}
            svc.metrics.predictions.labels(prediction["label"]).inc()
            svc.prediction_log.write(svc.model.model_name, name, stats, prediction)
            predictions.append({"filename": name, **prediction})
        # Built as plain JSON (the shape is PredictResponse's, as documented) to keep per-request work small.
        return JSONResponse({"model": svc.model.model_name, "predictions": predictions})

    return app
