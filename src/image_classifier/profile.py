"""Profile a few training steps of any training config: ``python -m image_classifier.profile [options] [overrides]``.

The overrides are the training run's (``experiment=finetune_cpu``, ``trainer.device=cuda``, ...). The run is set
up as ``train`` sets it up, without the linear probe (it fits the head before fine-tuning, not in a step); then
:func:`~image_classifier.training.profiling.profile_steps` records the steps. Printed: the step time split across
data wait, forward, backward and optimizer, and the top operators by self time. Written to ``--out``:
``trace/*.pt.trace.json`` (TensorBoard: ``tensorboard --logdir OUT/trace`` with ``torch-tb-profiler``; Perfetto:
open the file at https://ui.perfetto.dev), ``operators.txt`` and ``profile.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from image_classifier.atomic import write_text_atomic
from image_classifier.config.checks import check_train_config
from image_classifier.config.entry import check_composes, config_dir
from image_classifier.errors import ConfigError, report_user_errors
from image_classifier.project import project_root
from image_classifier.training.profiling import StepProfile, profile_steps
from image_classifier.training.recipe import TrainingRun


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps recorded (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="steps traced and discarded first (default 3)")
    parser.add_argument("--wait", type=int, default=1, help="steps run untraced before the warm-up (default 1)")
    parser.add_argument("--top", type=int, default=15, help="operators in the table (default 15)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default outputs/profile/<time>)")
    args, overrides = parser.parse_known_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.wait < 0 or args.top < 1:
        raise ConfigError("--steps and --top must be at least 1, --warmup and --wait at least 0.")
    if unknown := [arg for arg in overrides if arg.startswith("-")]:
        raise ConfigError(f"unknown option {unknown[0]} (Hydra overrides are KEY=VALUE).")
    return args, overrides


def profile_config(overrides: list[str], out: Path) -> DictConfig:
    """The training config of ``overrides``, its outputs in ``out``, with no linear probe and no logger."""
    os.environ.setdefault("PROJECT_ROOT", str(project_root()))
    check_composes("train", overrides)
    with initialize_config_dir(config_dir(), version_base="1.3", job_name="profile"):
        cfg = compose("train", overrides=[*overrides, "logger=none"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.trainer.linear_probe.enabled = False
        del cfg["hydra"]
    check_train_config(cfg)
    return cfg


def report(result: StepProfile, out: Path) -> str:
    """The printed report; ``operators.txt`` and ``profile.json`` are written beside the trace."""
    write_text_atomic(out / "operators.txt", result.operators + "\n")
    summary = {
        "device": result.device,
        "steps": result.steps,
        "step_ms": result.step_ms,
        "phase_ms": result.phase_ms,
        "sort_by": result.sort_by,
        "traces": [str(path) for path in result.traces],
    }
    write_text_atomic(out / "profile.json", json.dumps(summary, indent=2) + "\n")
    traces = "\n".join(f"  {path}" for path in result.traces)
    return (
        f"Step time over {result.steps} steps on {result.device}:\n{result.split_table()}\n\n"
        f"Top operators by {result.sort_by.replace('_total', '')}:\n{result.operators}\n\n"
        f"Trace (TensorBoard's profiler plugin, or https://ui.perfetto.dev):\n{traces}"
    )


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    out = (args.out or project_root() / "outputs" / "profile" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    run = TrainingRun(profile_config(overrides, out))  # set up as train sets it up
    result = profile_steps(run, out / "trace", active=args.steps, warmup=args.warmup, wait=args.wait, top=args.top)
    print(report(result, out))


if __name__ == "__main__":
    main()
