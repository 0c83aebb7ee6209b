"""A run that fails inside a Hydra multirun finishes its W&B run: the next job of the process starts its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, TINY_OVERRIDES
from tests.helpers.wandb_records import read_offline_run

# ``python -m image_classifier.train``, with the first seed's job failing in its first epoch (after W&B started)
TRAIN_FAILING_SEED_1 = """
import sys
from image_classifier.train import main
from image_classifier.training.recipe import TrainingRun

train_epoch = TrainingRun.train_epoch

def fail_seed_1(run, epoch):
    if run.cfg.trainer.seed == 1:
        raise RuntimeError("injected failure in the middle of the run")
    return train_epoch(run, epoch)

TrainingRun.train_epoch = fail_seed_1
main()
"""


def test_a_job_that_fails_in_a_multirun_finishes_its_wandb_run(tmp_path: Path, tiny_data_root: Path) -> None:
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, "-c", TRAIN_FAILING_SEED_1, "-m", "trainer.seed=1,2", *TINY_OVERRIDES, "logger=wandb",
        "logger.log_model=false", f"data.root={tiny_data_root}", "model.kwargs.width=8", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    env = {**os.environ, "PROJECT_ROOT": str(REPO_ROOT), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "injected failure in the middle of the run" in result.stderr
    assert not (sweep / "0" / "metrics.json").exists() and (sweep / "1" / "metrics.json").is_file()

    failed, done = read_offline_run(sweep / "0"), read_offline_run(sweep / "1")
    assert failed.exit_code == 1, "the failed job's W&B run is finished, as failed"
    assert done.exit_code == 0 and done.run_id != failed.run_id
    assert "val/accuracy" in done.history_keys and "val/accuracy" not in failed.history_keys
