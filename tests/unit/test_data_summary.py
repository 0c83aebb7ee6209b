"""The CI job summary of a prepared dataset and of ``dvc metrics diff``, on real prepared data and a real DVC repo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from image_classifier.data import summary as summary_module
from image_classifier.data.__main__ import main as prepare_main
from image_classifier.data.layout import load_prepared_dataset
from image_classifier.data.summary import main, metrics_diff_markdown, render


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dogs vs. Cats prepared by the real source from a folder with three files it must skip."""
    root = tmp_path_factory.mktemp("cats_vs_dogs")
    folder = root / "source" / "train"
    folder.mkdir(parents=True)
    for label, color in (("cat", (200, 120, 40)), ("dog", (40, 90, 200))):
        for index in range(10):
            Image.new("RGB", (24 + index, 20), color).save(folder / f"{label}.{index}.jpg", quality=90)
    (folder / "cat.99.jpg").write_text("not an image")
    (folder / "dog.98.jpg").write_bytes((folder / "dog.0.jpg").read_bytes()[:200])
    (folder / "kitten.jpg").write_bytes((folder / "cat.0.jpg").read_bytes())
    assert prepare_main(["cats_vs_dogs", "--source", str(root / "source"), "--root", str(root / "data")]) == 0
    return root / "data" / "processed" / "cats_vs_dogs"


def test_counts_per_split_and_class_and_every_skipped_file_with_its_reason(prepared: Path) -> None:
    summary = load_prepared_dataset(prepared).summary
    text = render(prepared)
    counts = summary["counts"]
    assert "| class | train | val | test | total |" in text
    for label in ("cat", "dog"):
        row = [counts[split][label] for split in ("train", "val", "test")]
        assert f"| `{label}` | {' | '.join(map(str, row))} | {sum(row)} |" in text
    assert f"| **total** | **{sum(counts['train'].values())}** |" in text and f"**{summary['total']}** |" in text
    assert summary["total"] == 20 and len(summary["skipped"]) == 3
    assert "### Skipped files: 3" in text
    for entry in summary["skipped"]:
        assert f"| `{entry['path']}` | {entry['reason']} |" in text
    for reason, count in summary["skipped_by_reason"].items():
        assert f"| {reason} | {count} |" in text
    assert "no cat/dog label in the file name" in text and "not an image" in text
    fingerprint = load_prepared_dataset(prepared).fingerprint
    assert f"Dogs vs. Cats (Kaggle competition); 2 classes, 20 images; fingerprint `{fingerprint}`" in text


def test_a_long_list_of_skipped_files_is_cut_but_the_counts_by_reason_are_not(
    prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(summary_module, "MAX_SKIPPED_LISTED", 1)
    text = render(prepared)
    assert "Each skipped file (the first 1)" in text
    assert sum(line.startswith("| `train/") for line in text.splitlines()) == 1
    reasons = text.split("| reason | files |")[1].split("<details>")[0].strip().splitlines()[1:]
    assert sum(int(line.rsplit("|", 2)[1]) for line in reasons) == 3


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A git + DVC repo whose ``main`` commits metrics.json; the workspace changes accuracy and f1/cat."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    subprocess.run(["dvc", "init", "-q"], cwd=repo, check=True)
    (repo / "dvc.yaml").write_text("metrics:\n  - reports/metrics.json\n")
    (repo / "reports").mkdir()
    (repo / "reports" / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "loss": 1.0, "f1/cat": 0.4}))
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "metrics")
    (repo / "reports" / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "loss": 1.0, "f1/cat": 0.6}))
    return repo


def test_metrics_diff_against_a_git_revision_from_real_dvc(prepared: Path, dvc_repo: Path) -> None:
    text = render(prepared, against="main", repo=dvc_repo)
    assert "## Metrics against `main`" in text
    overall = text.index("| `reports/metrics.json` | `accuracy` | 0.5 | 0.75 | +0.25 |")
    per_class = text.index("| `reports/metrics.json` | `f1/cat` | 0.4 | 0.6 | +0.2 |")
    assert overall < text.index("<details><summary>Per class: 1 metrics</summary>") < per_class
    assert "`loss`" not in text, "dvc metrics diff lists changed metrics only"


def test_an_unknown_revision_is_reported_in_the_summary_not_raised(
    prepared: Path, dvc_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = render(prepared, against="no-such-branch", repo=dvc_repo)
    assert "Not compared: dvc metrics diff no-such-branch failed:" in text
    assert "### Skipped files: 3" in text
    assert "no-such-branch" in capsys.readouterr().err


def test_no_metric_change_says_so() -> None:
    assert "No metric changed against `origin/main`." in metrics_diff_markdown({}, "origin/main")
    row = metrics_diff_markdown({"m.json": {"f1": {"old": None, "new": 0.5, "diff": None}}}, "main").splitlines()[-1]
    assert row == "| `m.json` | `f1` | — | 0.5 | — |"


def test_cli_finds_the_pipeline_dataset_from_params_and_appends_to_the_output(prepared: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  name: cats_vs_dogs\n  root: {prepared.parent.parent}\n")
    output = tmp_path / "step_summary.md"
    output.write_text("earlier step\n")
    assert main(["--params", str(params), "--output", str(output)]) == 0
    text = output.read_text()
    assert text.startswith("earlier step\n## Dataset `cats_vs_dogs`") and "### Skipped files: 3" in text


def test_a_dataset_that_is_not_prepared_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--dataset", str(tmp_path / "processed" / "shapes")])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: No prepared dataset at {tmp_path / 'processed' / 'shapes'}. Run `dvc repro prepare` to prepare it."
    ]
