"""Project tasks: ``invoke --list``. Each is a thin wrapper over a Python entry point."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from invoke import Context, task

ROOT = Path(__file__).resolve().parent
PY = shlex.quote(sys.executable)
_TORCHRUN = Path(sys.executable).with_name("torchrun")
TORCHRUN = shlex.quote(str(_TORCHRUN)) if _TORCHRUN.exists() else f"{PY} -m torch.distributed.run"


def _run(c: Context, command: str) -> None:
    with c.cd(str(ROOT)):
        c.run(command, pty=sys.stdout.isatty(), env={"PROJECT_ROOT": str(ROOT)})


@task(help={"name": "shapes | animals_v2 | cifar10 | cats_vs_dogs", "source": "archive or folder you already have", "root": "data directory (default data/)"})
def data(c: Context, name: str = "shapes", source: str = "", root: str = "") -> None:
    """Get a dataset (download or import) and prepare it into ROOT/processed/NAME."""
    args = [name] + (["--source", source] if source else []) + (["--root", root] if root else [])
    _run(c, f"{PY} -m image_classifier.data {shlex.join(args)}")


@task(
    help={
        "overrides": 'Hydra overrides in one quoted string, e.g. -o "model=timm trainer.max_epochs=3" (or after --)',
        "nproc": "data-parallel processes on this machine (torchrun --standalone); data.batch_size stays global",
    }
)
def train(c: Context, overrides: str = "", nproc: int = 0) -> None:
    """Train a model: invoke train [--nproc N] -o "OVERRIDES" (or: invoke train -- OVERRIDES...)."""
    launcher = f"{TORCHRUN} --standalone --nproc_per_node={nproc}" if nproc > 0 else PY
    _run(c, " ".join(part for part in (launcher, "-m image_classifier.train", overrides, c.remainder) if part))


@task(help={"overrides": 'Hydra overrides, e.g. "checkpoint=outputs/train/runs/<run>/checkpoints/best.pt"'})
def evaluate(c: Context, overrides: str = "") -> None:
    """Evaluate a checkpoint bundle: invoke evaluate "checkpoint=PATH [data=...]" (default: the newest best.pt)."""
    if "checkpoint=" not in overrides:
        newest = _newest_checkpoint()
        if newest is None:
            sys.exit("error: no checkpoint given and none found under outputs/train: run `invoke train` first.")
        print(f"Evaluating the newest checkpoint: {newest}")
        overrides = f"checkpoint={shlex.quote(str(newest))} {overrides}"
    _run(c, f"{PY} -m image_classifier.evaluate {overrides}")


def _newest_checkpoint() -> Path | None:
    candidates = sorted((ROOT / "outputs" / "train").glob("**/checkpoints/best.pt"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


@task(help={"args": "extra pytest arguments", "slow": "also run tests marked slow"})
def test(c: Context, args: str = "", slow: bool = False) -> None:
    """Run the test suite (fast tests by default)."""
    marker = "" if slow else "-m 'not slow'"
    _run(c, f"{PY} -m pytest {marker} {args}")


@task
def lint(c: Context) -> None:
    """ruff check and format check."""
    _run(c, f"{PY} -m ruff check .")
    _run(c, f"{PY} -m ruff format --check .")


@task
def format(c: Context) -> None:  # noqa: A001
    """Apply ruff's fixes and formatting."""
    _run(c, f"{PY} -m ruff check --fix .")
    _run(c, f"{PY} -m ruff format .")
