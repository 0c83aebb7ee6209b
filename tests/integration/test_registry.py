"""The model registry on a real git + DVC repository in a temporary folder: register, promote, resolve, check.

The repository declares the project's own ``artifacts.yaml`` and ``.gto``; its DVC remote is a local folder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import gto.api
import pytest
from dvc.repo import Repo

from image_classifier.api.model_source import fetch as fetch_uri
from image_classifier.checkpoint import load_bundle, save_bundle
from image_classifier.data.shapes import generate_shapes
from image_classifier.hashing import sha256_file
from image_classifier.registry.__main__ import main
from image_classifier.registry.gate import check
from image_classifier.registry.publish import promote, register
from image_classifier.registry.store import RegistryError
from image_classifier.registry.verdicts import record_check, recorded_check
from image_classifier.registry.versions import fetch, resolve
from image_classifier.training.tracking import link_model_version
from tests.conftest import REPO_ROOT, TINY_DATA_OVERRIDES, TINY_SHAPES
from tests.helpers import bundles

NAME = "image-classifier"


@dataclass
class Registry:
    root: Path
    remote: Path
    bundle: Path
    data_root: Path


def run(root: Path, *command: str) -> str:
    return subprocess.run(command, cwd=root, capture_output=True, text=True, check=True, timeout=120).stdout


def make_bundle(path: Path, classes: list[str], accuracy: float) -> Path:
    """A baseline-CNN bundle for ``classes`` at 32 px that claims ``accuracy`` on its test split."""
    bundle = bundles.make_bundle(
        classes,
        config={"data": {"name": "shapes", "image_size": 32}},
        lineage={"git_commit": "abc123", "data_fingerprint": "f00d"},
        metrics={"test/accuracy": accuracy, "val/loss": float("nan")},
    )
    return save_bundle(path, bundle)


def new_repo(base: Path) -> tuple[Path, Path]:
    """A git + DVC repository under ``base`` with the project's registry files and a local DVC remote."""
    root, remote = base / "repo", base / "remote"
    root.mkdir(parents=True)
    run(root, "git", "init", "-q", "-b", "main")
    run(root, "git", "config", "user.name", "Registry Test")
    run(root, "git", "config", "user.email", "registry@example.com")
    run(root, "git", "config", "commit.gpgsign", "false")
    run(root, "git", "config", "tag.gpgsign", "false")
    Repo.init(str(root)).close()
    (root / ".dvc" / "config").write_text(
        f"[core]\n    remote = local\n    analytics = false\n['remote \"local\"']\n    url = {remote}\n"
    )
    for name in ("artifacts.yaml", ".gto"):
        shutil.copy(REPO_ROOT / name, root / name)
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-q", "-m", "init")
    return root, remote


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """v1.0.0 registered (bundle pushed to the remote) and promoted to prod."""
    base = tmp_path_factory.mktemp("registry")
    data_root = base / "data"
    classes = generate_shapes(data_root / "processed" / "shapes", TINY_SHAPES).classes
    root, remote = new_repo(base)
    bundle = make_bundle(base / "best.pt", classes, accuracy=0.0)
    register(bundle, repo=root, version="1.0.0")
    # the result `registry check` records (the slow tests below run the check itself)
    record_check(root, f"{NAME}@v1.0.0", {"passed": True, "measured": 0.1, "registered": 0.0, "tolerance": 0.0})
    promote(NAME, "v1.0.0", "prod", repo=root)
    return Registry(root, remote, bundle, data_root)


def test_register_versions_the_bundle_with_dvc_and_tags_it_with_its_record(registry: Registry) -> None:
    root = registry.root
    dvc_file = root / "models" / f"{NAME}.pt.dvc"
    assert run(root, "git", "log", "-1", "--format=%s", f"{NAME}@v1.0.0").strip() == f"Register {NAME}"
    assert run(root, "git", "ls-files", "models").split() == ["models/.gitignore", f"models/{NAME}.pt.dvc"]
    assert run(root, "git", "status", "--porcelain").strip() == ""
    md5 = dvc_file.read_text().split("md5: ")[1].split()[0]
    assert (registry.remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()  # pushed: resolvable elsewhere
    message = run(root, "git", "tag", "-l", "--format=%(contents)", f"{NAME}@v1.0.0")
    record = json.loads(message.split("\n\n", 1)[1])
    assert record["sha256"] == sha256_file(registry.bundle) and record["md5"] == md5
    assert record["metrics"] == {"test/accuracy": 0.0}  # NaN left out: the message stays JSON
    assert record["lineage"] == {"git_commit": "abc123", "data_fingerprint": "f00d"}
    assert (record["model"], record["data"], record["input_size"]) == ("baseline_cnn", "shapes", [3, 32, 32])


def test_gto_show_lists_the_version_and_its_stage(registry: Registry) -> None:
    shown = json.loads(run(registry.root, "gto", "show", "--json"))
    assert shown[NAME]["version"] == "v1.0.0"
    assert shown[NAME]["stage"]["prod"] == "v1.0.0"
    assert run(registry.root, "git", "tag", "-l", f"{NAME}#prod*").split() == [f"{NAME}#prod#1"]


@pytest.mark.parametrize("reference", [f"gto:{NAME}#prod", f"{NAME}#prod#1", f"{NAME}@v1.0.0", f"{NAME}@latest"])
def test_a_reference_resolves_to_the_registered_bytes(registry: Registry, reference: str, tmp_path: Path) -> None:
    model = resolve(reference, repo=registry.root)
    assert (model.name, model.version) == (NAME, "v1.0.0")
    local = fetch(model, tmp_path, repo=registry.root)
    assert local.read_bytes() == registry.bundle.read_bytes()
    assert model.sha256 == sha256_file(local)


def test_a_stage_resolves_from_the_remote_alone_and_serves_as_a_model_uri(registry: Registry, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(registry.root), str(clone))  # no DVC cache: the bytes come from the remote
    path = fetch_uri(f"gto:{NAME}#prod", tmp_path / "cache", registry=str(clone))
    assert load_bundle(path).classes == load_bundle(registry.bundle).classes
    assert sha256_file(path) == sha256_file(registry.bundle)
    path.write_bytes(b"tampered")  # a cached copy that no longer matches is fetched again
    assert fetch_uri(f"gto:{NAME}#prod", tmp_path / "cache", registry=str(clone)).read_bytes() == (
        registry.bundle.read_bytes()
    )


def test_a_tag_whose_bundle_is_missing_is_rejected(tmp_path: Path, registry: Registry) -> None:
    root, _ = new_repo(tmp_path)
    bundle = make_bundle(tmp_path / "best.pt", load_bundle(registry.bundle).classes, accuracy=0.5)
    (root / "notes.txt").write_text("work in progress")
    run(root, "git", "add", "notes.txt")
    register(bundle, repo=root, version="v2.0.0", push=False)  # only in the local cache
    assert run(root, "git", "status", "--porcelain", "notes.txt").startswith("A ")  # staged, left out of the commit
    shutil.rmtree(root / ".dvc" / "cache")
    with pytest.raises(RegistryError, match=r"image-classifier@v2\.0\.0: its bundle .* neither the DVC cache nor"):
        fetch(resolve(f"{NAME}@v2.0.0", repo=root), tmp_path / "out", repo=root)
    with pytest.raises(RegistryError, match="neither the DVC cache nor the remote"):
        promote(NAME, "v2.0.0", "prod", repo=root)
    assert run(root, "git", "tag", "-l", f"{NAME}#*").strip() == ""  # no stage for bytes nobody can fetch


def test_register_refuses_a_file_that_is_not_a_bundle(tmp_path: Path, registry: Registry) -> None:
    junk = tmp_path / "notes.pt"
    junk.write_text("not a model")
    with pytest.raises(Exception, match="not a torch checkpoint"):
        register(junk, repo=registry.root)


def one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_bad_references_and_stages_are_one_line_errors(registry: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    repo = ["--repo", str(registry.root)]
    assert one_line(capsys, [*repo, "resolve", f"{NAME}@v9.9.9"]) == (
        f"error: {NAME}@v9.9.9: {NAME} has no registered version v9.9.9."
    )
    assert one_line(capsys, [*repo, "resolve", f"{NAME}#staging"]) == (
        f"error: No version of {NAME} is in stage 'staging'."
    )
    assert one_line(capsys, [*repo, "resolve", "Not A Name"]).startswith("error: ")
    (registry.root.parent / "not-a-repo").mkdir()
    assert one_line(capsys, ["--repo", str(registry.root.parent / "not-a-repo"), "resolve", f"{NAME}@v1.0.0"]) == (
        f"error: {registry.root.parent / 'not-a-repo'} is not a git repository"
    )
    with pytest.raises(SystemExit):
        main([*repo, "promote", NAME, "--version", "v1.0.0", "--stage", "qa"])  # argparse: not a choice


def test_resolve_prints_the_version_its_local_copy_and_remote_url(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--repo", str(registry.root), "resolve", f"{NAME}#prod", "--out", str(tmp_path), "--remote-url"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["reference"] == f"{NAME}@v1.0.0" and info["stage"] == "prod"
    assert Path(info["local_path"]).read_bytes() == registry.bundle.read_bytes()
    assert info["remote_url"] == str(registry.remote / "files" / "md5" / info["md5"][:2] / info["md5"][2:])


def test_linking_to_wandb_is_skipped_cleanly_offline(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    model = resolve(f"{NAME}#prod", repo=registry.root)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    link = {"name": model.name, "version": model.version, "metadata": model.record, "file_name": "best.pt"}
    assert link_model_version(registry.bundle, **link) is None
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert link_model_version(registry.bundle, **link) is None
    assert list(tmp_path.iterdir()) == []  # no run started, nothing written


EVALUATE = [*TINY_DATA_OVERRIDES, "data.image_size=32", "trainer.device=cpu"]


@pytest.mark.slow
def test_check_passes_a_version_that_reaches_its_registered_accuracy(registry: Registry) -> None:
    measured, registered = check(f"{NAME}#prod", [f"data.root={registry.data_root}", *EVALUATE], repo=registry.root)
    assert registered == 0.0 and 0.0 <= measured <= 1.0


@pytest.mark.slow
def test_check_fails_a_version_below_its_registered_accuracy(registry: Registry, tmp_path: Path) -> None:
    root, _ = new_repo(tmp_path)
    overclaimed = make_bundle(tmp_path / "best.pt", load_bundle(registry.bundle).classes, accuracy=1.0)
    register(overclaimed, repo=root, version="v0.2.0")
    with pytest.raises(RegistryError, match=r"accuracy 0\.\d+ on the pinned data is below the registered 1\.0000"):
        check(f"{NAME}@v0.2.0", [f"data.root={registry.data_root}", *EVALUATE], repo=root)


def dry_run(*args: str) -> str:
    command = [sys.executable, "-m", "invoke", "--dry", *args]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True)
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout).strip()


def test_invoke_register_and_promote_run_the_registry_commands() -> None:
    bundle = REPO_ROOT / "runs" / "best.pt"
    assert dry_run("register", "--checkpoint", "runs/best.pt", "--version", "v0.3.0", "--no-push").endswith(
        f"-m image_classifier.registry register --checkpoint {bundle} --version v0.3.0 --no-push"
    )
    assert dry_run("promote", NAME, "--version", "v0.3.0", "--stage", "prod").endswith(
        f"-m image_classifier.registry promote {NAME} --version v0.3.0 --stage prod"
    )


def test_promote_refuses_a_version_that_was_never_checked(registry: Registry, tmp_path: Path) -> None:
    root, _ = new_repo(tmp_path)
    register(make_bundle(tmp_path / "best.pt", load_bundle(registry.bundle).classes, accuracy=0.0), repo=root)
    with pytest.raises(RegistryError, match=r"image-classifier@v0\.0\.1 was never checked: run .*registry check"):
        promote(NAME, "v0.0.1", "prod", repo=root)
    assert run(root, "git", "tag", "-l", f"{NAME}#*").strip() == ""


@pytest.mark.slow
def test_promote_refuses_a_failed_version_and_a_stage_skips_it(registry: Registry, tmp_path: Path) -> None:
    root, _ = new_repo(tmp_path)
    classes = load_bundle(registry.bundle).classes
    register(make_bundle(tmp_path / "good.pt", classes, accuracy=0.0), repo=root, version="v1.0.0")
    check(f"{NAME}@v1.0.0", [f"data.root={registry.data_root}", *EVALUATE], repo=root)
    promote(NAME, "v1.0.0", "prod", repo=root)
    register(make_bundle(tmp_path / "bad.pt", classes, accuracy=1.0), repo=root, version="v2.0.0")
    with pytest.raises(RegistryError, match=r"below the registered 1\.0000"):
        check(f"{NAME}@v2.0.0", [f"data.root={registry.data_root}", *EVALUATE], repo=root)
    assert recorded_check(root, f"{NAME}@v2.0.0")["passed"] is False
    with pytest.raises(RegistryError, match=r"image-classifier@v2\.0\.0 failed its accuracy check .*not promoted"):
        promote(NAME, "v2.0.0", "prod", repo=root)
    # a stage tag put on the failed version by hand (gto assign), as CI saw before the gate: resolving skips it
    gto.api.assign(str(root), NAME, "prod", version="v2.0.0")
    assert resolve(f"{NAME}#prod", repo=root).version == "v1.0.0"
