"""Export a checkpoint bundle to ONNX, verified against PyTorch; optionally int8 dynamic quantization.

Each model is written beside its path and verified there; only a verified model replaces the file at its path
(an export that fails or is killed leaves the earlier one as it was). ``.export.json`` is written last.

``python -m image_classifier.export --checkpoint best.pt --output models/model.onnx [--quantize --data DIR]``

The ONNX model has a dynamic batch axis and carries the bundle's classes, preprocessing (input size,
mean/std, interpolation, crop) and lineage as metadata, so the API can serve it alone, without torch. The same
description is written beside it as ``<name>.serving.json`` (with the model file's SHA-256, for ``MODEL_SHA256``),
for tools and people that read no ONNX.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from image_classifier.atomic import atomic_path, write_text_atomic
from image_classifier.checkpoint import Bundle, load_bundle
from image_classifier.errors import DataError, UserError, report_user_errors
from image_classifier.hashing import sha256_file

INPUT, OUTPUT = "input", "logits"


@dataclass
class ExportReport:
    onnx_path: str
    opset: int
    max_abs_diff: float
    quantized_path: str | None = None
    quantized_max_abs_diff: float | None = None
    float_accuracy: float | None = None
    quantized_accuracy: float | None = None
    accuracy_change: float | None = None
    images: int | None = None


def onnx_metadata(bundle: Bundle) -> dict[str, str]:
    """The bundle's description as ONNX ``metadata_props`` (JSON strings)."""
    data_config = bundle.data_config
    return {
        "model_name": bundle.model_name,
        "classes": json.dumps(list(bundle.classes)),
        "data_config": json.dumps(data_config),
        "input_size": json.dumps(list(data_config["input_size"])),
        "mean": json.dumps(list(data_config["mean"])),
        "std": json.dumps(list(data_config["std"])),
        "lineage": json.dumps(serving_lineage(bundle)),
    }


def serving_lineage(bundle: Bundle) -> dict[str, Any]:
    """Where the bundle came from (commit, data fingerprint), its epoch, metrics and library versions."""
    return {**bundle.lineage, "epoch": bundle.epoch, "metrics": bundle.metrics, "versions": bundle.versions}


def write_serving_card(bundle: Bundle, onnx_path: Path) -> Path:
    """``<name>.serving.json`` beside ``onnx_path``: what serving it needs (model name, classes, data config,
    lineage) and the file's SHA-256."""
    card = {
        "model_name": bundle.model_name,
        "classes": list(bundle.classes),
        "data_config": bundle.data_config,
        "lineage": serving_lineage(bundle),
        "onnx_file": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
    }
    return write_text_atomic(onnx_path.with_suffix(".serving.json"), json.dumps(card, indent=2) + "\n")


def export_onnx(bundle: Bundle, output: Path, opset: int = 17) -> Path:
    """Trace the bundle's model to ``output`` with a dynamic batch axis and the bundle's metadata."""
    import onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    model = bundle.build_model()
    example = torch.zeros(2, *bundle.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is legacy
        torch.onnx.export(
            model,
            (example,),
            str(output),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(output))
    for key, value in onnx_metadata(bundle).items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(output))
    return output


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def max_abs_diff(bundle: Bundle, onnx_path: Path, batch: int = 5, seed: int = 0) -> float:
    """Largest absolute logit difference between PyTorch and ONNX Runtime on a random batch."""
    inputs = torch.randn(batch, *bundle.input_size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        expected = bundle.build_model()(inputs).numpy()
    (actual,) = _session(onnx_path).run(None, {INPUT: inputs.numpy()})
    return float(np.abs(actual - expected).max())


def quantize(onnx_path: Path, output: Path) -> Path:
    """int8 dynamic quantization of the weights (onnxruntime.quantization.quantize_dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(onnx_path), str(output), weight_type=QuantType.QInt8)
    return output


def onnx_accuracy(onnx_path: Path, bundle: Bundle, folder: Path, batch_size: int = 64) -> tuple[float, int]:
    """Top-1 accuracy of an ONNX model on an ImageFolder split, with the evaluation transform."""
    from torchvision.datasets import ImageFolder

    from image_classifier.preprocess import eval_transform

    if not folder.is_dir():
        raise DataError(f"Data folder not found: {folder} (a split in ImageFolder layout, e.g. .../shapes/test).")
    images = ImageFolder(str(folder), transform=eval_transform(bundle.data_config))
    if images.classes != list(bundle.classes):
        raise DataError(f"{folder} has classes {images.classes}, the model has {bundle.classes}.")
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size)
    session, correct = _session(onnx_path), 0
    for inputs, targets in loader:
        (logits,) = session.run(None, {INPUT: inputs.numpy()})
        correct += int((logits.argmax(axis=1) == targets.numpy()).sum())
    return correct / len(images), len(images)


def export(
    checkpoint: Path, output: Path, opset: int = 17, tolerance: float = 1e-4, quantized: bool = False,
    data: Path | None = None,
) -> ExportReport:  # fmt: skip
    """Export, verify against PyTorch (fails above ``tolerance``; ``output`` is then left as it was), optionally
    quantize and compare accuracy."""
    bundle = load_bundle(checkpoint)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as partial:
        export_onnx(bundle, partial, opset)
        report = ExportReport(onnx_path=str(output), opset=opset, max_abs_diff=max_abs_diff(bundle, partial))
        if report.max_abs_diff > tolerance:
            raise UserError(
                f"ONNX output differs from PyTorch by {report.max_abs_diff:.3g} (tolerance {tolerance}); "
                f"{output} was not replaced."
            )
    write_serving_card(bundle, output)
    if quantized:
        int8 = output.with_name(f"{output.stem}.int8.onnx")
        with atomic_path(int8) as partial:
            quantize(output, partial)
            report.quantized_max_abs_diff = max_abs_diff(bundle, partial)
        report.quantized_path = str(int8)
        if data is not None:
            report.float_accuracy, report.images = onnx_accuracy(output, bundle, data)
            report.quantized_accuracy, _ = onnx_accuracy(int8, bundle, data)
            report.accuracy_change = report.quantized_accuracy - report.float_accuracy
    write_text_atomic(output.with_suffix(".export.json"), json.dumps(asdict(report), indent=2) + "\n")
    return report


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint bundle (best.pt)")
    parser.add_argument("--output", type=Path, help="ONNX file (default: models/<checkpoint stem>.onnx)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |PyTorch - ONNX| logit")
    parser.add_argument("--quantize", action="store_true", help="also write an int8 dynamically quantized model")
    parser.add_argument("--data", type=Path, help="ImageFolder split to measure the quantized accuracy change on")
    args = parser.parse_args(argv)
    output = args.output or Path("models") / f"{args.checkpoint.stem}.onnx"
    report = export(args.checkpoint, output, args.opset, args.tolerance, args.quantize, args.data)
    print(f"Wrote {report.onnx_path}: max |PyTorch - ONNX Runtime| = {report.max_abs_diff:.3g}")
    if report.quantized_path:
        print(f"Wrote {report.quantized_path}: max |PyTorch - int8| = {report.quantized_max_abs_diff:.3g}")
    if report.accuracy_change is not None:
        print(
            f"Accuracy on {report.images} images: float {report.float_accuracy:.4f}, "
            f"int8 {report.quantized_accuracy:.4f} (change {report.accuracy_change:+.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
