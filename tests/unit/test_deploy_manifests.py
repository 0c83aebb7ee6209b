"""Deploy manifests and the publish/deploy/registry workflows: the image names come from deploy/images.env alone.

Manifests are rendered by ``deploy/render.py`` (run for real), then parsed; the Vertex AI job's data step runs for
real against a local DVC remote standing in for the bucket Vertex AI mounts.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import REPO_ROOT, ComposeFn

DEPLOY = REPO_ROOT / "deploy"
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
SERVICE = {
    "IMAGE_TAG": "sha-0123abc",
    "MODEL_URI": "gs://image-classifier-dvc/image-classifier/files/md5/ab/cdef",
    "MODEL_SHA256": "e" * 64,
    "CLOUD_RUN_SERVICE_ACCOUNT": "api@project.iam.gserviceaccount.com",
    "PREDICTION_LOG_BUCKET": "image-classifier-predictions",
}
VERTEX = {
    "IMAGE_TAG": "1.2.0",
    "DATA": "animals_v2",
    "DATA_MD5": "0123456789abcdef0123456789abcdef.dir",
    "DVC_BUCKET": "image-classifier-dvc",
    "OUTPUT_BUCKET": "image-classifier-runs",
    "RUN_NAME": "animals_v2-convnextv2_atto",
    "SERVICE_ACCOUNT": "train@project.iam.gserviceaccount.com",
}


FORK_OWNER = "Image-Classifier-Fork"  # GHCR wants it in lower case


def render(*args: str, check: bool = True, owner: str | None = FORK_OWNER) -> subprocess.CompletedProcess[str]:
    """``python deploy/render.py ARGS`` in a workflow run of ``owner``'s repository (none: outside a workflow), with
    none of the manifests' variables in the environment."""
    env = {name: value for name, value in os.environ.items() if name not in {*SERVICE, *VERTEX, "OWNER"}}
    env.pop("GITHUB_REPOSITORY_OWNER", None)
    env |= {"GITHUB_REPOSITORY_OWNER": owner} if owner else {}
    command = [sys.executable, str(DEPLOY / "render.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=check)


def rendered(manifest: str, values: dict[str, str]) -> dict[str, Any]:
    data = yaml.safe_load(render(str(DEPLOY / manifest), *(f"{k}={v}" for k, v in values.items())).stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """The image names as deploy/images.env gives them."""
    return dict(line.split("=", 1) for line in render("--env").stdout.splitlines())


def test_images_env_is_the_one_place_the_registry_is_written() -> None:
    for path in [*DEPLOY.rglob("*.yaml"), *WORKFLOWS.glob("*.yml")]:
        assert "ghcr.io/" not in path.read_text(), f"{path} names an image repository: use deploy/images.env"
    assert "IMAGE_REPOSITORY=ghcr.io/" in (DEPLOY / "images.env").read_text()


def test_images_go_to_the_lower_case_owner_of_the_repository_the_workflow_runs_in() -> None:
    assert "IMAGE_REPOSITORY=ghcr.io/image-classifier-fork\n" in render("--env").stdout
    assert "IMAGE_REPOSITORY=ghcr.io/someone\n" in render("--env", owner="SomeOne").stdout
    assert "IMAGE_REPOSITORY=ghcr.io/given\n" in render("--env", "OWNER=Given").stdout


def test_render_derives_the_image_names(images: dict[str, str]) -> None:
    repository, mirror = images["IMAGE_REPOSITORY"], images["GCP_IMAGE_REPOSITORY"]
    assert images["TRAIN_IMAGE"] == f"{repository}/image-classifier-train"
    assert images["API_IMAGE"] == f"{repository}/image-classifier-api"
    assert images["GCP_API_IMAGE"] == f"{mirror}/image-classifier-api"
    assert mirror.endswith("/" + repository.split("/", 1)[1])  # the mirror keeps GHCR's path


def test_render_refuses_a_placeholder_without_a_value() -> None:
    done = render(str(DEPLOY / "cloudrun" / "service.yaml"), "IMAGE_TAG=x", check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: no value for CLOUD_RUN_SERVICE_ACCOUNT, MODEL_SHA256, MODEL_URI, PREDICTION_LOG_BUCKET: "
        "pass NAME=VALUE or set it in the environment."
    )


def test_the_pytorchjob_runs_the_published_train_image(images: dict[str, str]) -> None:
    job = rendered("pytorchjob.yaml", {"IMAGE_TAG": "1.2.0"})
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        assert replica["template"]["spec"]["containers"][0]["image"] == f"{images['TRAIN_IMAGE']}:1.2.0"


def test_cloud_run_serves_the_published_api_image_with_the_model_uri(images: dict[str, str]) -> None:
    service = rendered("cloudrun/service.yaml", SERVICE)
    assert (service["apiVersion"], service["kind"]) == ("serving.knative.dev/v1", "Service")
    spec = service["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == f"{images['GCP_API_IMAGE']}:{SERVICE['IMAGE_TAG']}"
    assert spec["containerConcurrency"] >= 1 and spec["serviceAccountName"] == SERVICE["CLOUD_RUN_SERVICE_ACCOUNT"]
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert (env["MODEL_URI"], env["MODEL_SHA256"]) == (SERVICE["MODEL_URI"], SERVICE["MODEL_SHA256"])
    assert "PORT" not in env  # Cloud Run sets it to the containerPort; the image listens on $PORT
    port = container["ports"][0]["containerPort"]
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": port}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] <= 240  # Cloud Run's limit


def test_cloud_run_writes_the_prediction_log_into_the_bucket_the_drift_job_reads() -> None:
    spec = rendered("cloudrun/service.yaml", SERVICE)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    log = Path({item["name"]: item["value"] for item in container["env"]}["IC_PREDICTION_LOG"])
    (mount,) = (m for m in container["volumeMounts"] if log.is_relative_to(m["mountPath"]))
    (volume,) = (v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["csi"]["driver"] == "gcsfuse.run.googleapis.com" and volume["csi"]["readOnly"] is False
    bucket = volume["csi"]["volumeAttributes"]["bucketName"]
    object_path = f"gs://{bucket}/{log.relative_to(mount['mountPath'])}"
    assert object_path == "gs://image-classifier-predictions/predictions.jsonl"
    drift = (WORKFLOWS / "drift.yml").read_text()
    assert "gs://PREDICTION_LOG_BUCKET/predictions.jsonl" in drift  # what the drift job is told to read
    assert 'invoke drift --log "$PREDICTION_LOG"' in drift


def vertex_container(job: dict[str, Any]) -> dict[str, Any]:
    (pool,) = job["workerPoolSpecs"]
    return dict(pool["containerSpec"])


def test_the_vertex_job_trains_the_published_image_into_a_bucket_and_resumes(
    images: dict[str, str], compose_config: ComposeFn
) -> None:
    job = rendered("vertex/train-job.yaml", VERTEX)
    container = vertex_container(job)
    assert container["imageUri"] == f"{images['GCP_TRAIN_IMAGE']}:{VERTEX['IMAGE_TAG']}"
    assert container["args"][:3] == ["python", "-m", "image_classifier.train"]
    overrides = container["args"][3:]
    assert "trainer.resume=auto" in overrides and job["scheduling"]["restartJobOnWorkerRestart"] is True
    run_dir = f"/gcs/{VERTEX['OUTPUT_BUCKET']}/{VERTEX['RUN_NAME']}/run"
    assert f"hydra.run.dir={run_dir}" in overrides
    assert job["baseOutputDirectory"]["outputUriPrefix"] == f"gs://{VERTEX['OUTPUT_BUCKET']}/{VERTEX['RUN_NAME']}"
    env = {item["name"]: item["value"] for item in container["env"]}
    dvc_config = (REPO_ROOT / ".dvc" / "config").read_text()
    gcs_remote = dvc_config.split("['remote \"gcs\"']")[1].split("url = ")[1].split()[0]
    assert env["DVC_REMOTE_DIR"] == f"/gcs/{gcs_remote.removeprefix('gs://')}"  # the project's GCS remote, mounted
    cfg = compose_config("train", [item for item in overrides if not item.startswith("hydra.")])
    OmegaConf.resolve(cfg)
    assert cfg.data.name == VERTEX["DATA"] and cfg.trainer.resume == "auto"


def test_the_vertex_data_step_pulls_the_pinned_dataset_from_the_dvc_remote(tmp_path: Path) -> None:
    from dvc.repo import Repo

    source, remote = tmp_path / "source", tmp_path / "bucket" / "image-classifier"
    (source / "animals_v2" / "train" / "cat").mkdir(parents=True)
    (source / "animals_v2" / "train" / "cat" / "1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (source / "animals_v2" / "manifest.csv").write_text("path,label,split\n")
    Repo.init(str(source), no_scm=True).close()
    core = "[core]\n    no_scm = true\n    remote = bucket\n    analytics = false\n"
    config = f"{core}['remote \"bucket\"']\n    url = {remote}\n"
    (source / ".dvc" / "config").write_text(config)
    with Repo(str(source)) as repo:
        repo.add(str(source / "animals_v2"))
        repo.push()
    md5 = yaml.safe_load((source / "animals_v2.dvc").read_text())["outs"][0]["md5"]
    container = vertex_container(rendered("vertex/train-job.yaml", {**VERTEX, "DATA_MD5": md5}))
    env = {item["name"]: item["value"] for item in container["env"]}
    env |= {"DVC_REMOTE_DIR": str(remote), "DATA_ROOT": str(tmp_path / "app" / "data"), "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [*container["command"], "true"],  # the data step, then `exec true` in place of training
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pulled = tmp_path / "app" / "data" / "processed" / "animals_v2"
    assert (pulled / "train" / "cat" / "1.jpg").read_bytes() == b"\xff\xd8 not really a jpeg"
    assert (pulled / "manifest.csv").is_file()


# --- workflows -------------------------------------------------------------------------------------


def workflow(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def triggers(data: dict[Any, Any]) -> dict[str, Any]:
    on = data.get("on", data.get(True))  # YAML 1.1 reads the bare key `on` as True
    assert isinstance(on, dict)
    return on


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if str(step.get("uses", "")).startswith(action)]


def test_images_are_published_to_ghcr_on_main_and_version_tags() -> None:
    images = workflow("images.yml")
    on = triggers(images)
    assert on["push"]["branches"] == ["main"] and on["push"]["tags"] == ["v*.*.*"] and "workflow_call" in on
    assert images["permissions"]["packages"] == "write"
    job = images["jobs"]["publish"]
    assert job["strategy"]["matrix"]["image"] == ["train", "api", "api-onnx"]
    assert any("deploy/render.py --env" in step.get("run", "") for step in job["steps"])
    (login,) = steps_using(job, "docker/login-action")
    assert login["with"]["registry"] == "ghcr.io"
    (meta,) = steps_using(job, "docker/metadata-action")
    assert meta["with"]["images"] == "${{ env.IMAGE_REPOSITORY }}/image-classifier-${{ matrix.image }}"
    kinds = {line.split(",")[0] for line in meta["with"]["tags"].split()}
    assert {"type=sha", "type=semver", "type=ref"} <= kinds
    (build,) = steps_using(job, "docker/build-push-action")
    assert build["with"]["push"] is True and build["with"]["tags"] == "${{ steps.meta.outputs.tags }}"
    assert build["with"]["cache-from"].startswith("type=gha") and build["with"]["cache-to"].startswith("type=gha")


def test_deploy_uses_workload_identity_federation_and_deploy_cloudrun() -> None:
    deploy = workflow("deploy.yml")
    assert {"workflow_call", "workflow_dispatch"} <= set(triggers(deploy))
    assert deploy["permissions"]["id-token"] == "write"
    job = deploy["jobs"]["cloudrun"]
    (auth,) = steps_using(job, "google-github-actions/auth")
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}  # no key
    (cloudrun,) = steps_using(job, "google-github-actions/deploy-cloudrun")
    assert cloudrun["with"]["metadata"].endswith("/service.yaml")
    assert any("deploy/render.py deploy/cloudrun/service.yaml" in step.get("run", "") for step in job["steps"])
    assert "credentials_json" not in (WORKFLOWS / "deploy.yml").read_text()


@pytest.mark.parametrize(
    ("tag", "fires"),
    [("image-classifier@v1.2.3", True), ("image-classifier#prod#3", True), ("v1.2.3", False), ("main", False)],
)
def test_the_registry_workflow_fires_on_gto_tags_only(tag: str, fires: bool) -> None:
    patterns = triggers(workflow("registry.yml"))["push"]["tags"]
    assert any(fnmatch.fnmatchcase(tag, pattern) for pattern in patterns) is fires


def test_the_registry_workflow_checks_then_publishes_and_deploys_prod() -> None:
    jobs = workflow("registry.yml")["jobs"]
    runs = " ".join(step.get("run", "") for step in jobs["check"]["steps"])
    assert "image_classifier.registry resolve" in runs and "image_classifier.registry check" in runs
    assert "dvc pull" in runs
    assert jobs["images"]["uses"] == "./.github/workflows/images.yml"
    assert jobs["deploy"]["uses"] == "./.github/workflows/deploy.yml"
    assert set(jobs["deploy"]["needs"]) == {"check", "images"}
    for name in ("images", "deploy"):
        assert jobs[name]["if"] == "needs.check.outputs.stage == 'prod'"
    assert jobs["deploy"]["with"]["image_tag"] == "sha-${{ github.sha }}"  # what images.yml tagged (type=sha)


@pytest.mark.parametrize(
    ("values", "image"),
    [
        ({"MODEL_URI": "gs://bucket/models/model.onnx"}, "GCP_API_ONNX_IMAGE"),
        ({"MODEL_URI": SERVICE["MODEL_URI"], "MODEL_FORMAT": "onnx"}, "GCP_API_ONNX_IMAGE"),
        ({"MODEL_URI": "gs://bucket/models/model.onnx", "MODEL_FORMAT": "bundle"}, "GCP_API_IMAGE"),
        ({"MODEL_URI": "https://host/best.pt", "MODEL_FORMAT": "auto"}, "GCP_API_IMAGE"),
    ],
)
def test_cloud_run_serves_an_onnx_export_with_the_slim_image(
    images: dict[str, str], values: dict[str, str], image: str
) -> None:
    service = rendered("cloudrun/service.yaml", {**SERVICE, **values})
    (container,) = service["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{images[image]}:{SERVICE['IMAGE_TAG']}"
    assert images["GCP_API_ONNX_IMAGE"].endswith("/image-classifier-api-onnx")


def test_an_unknown_model_format_is_a_one_line_error() -> None:
    result = render(str(DEPLOY / "cloudrun" / "service.yaml"), *(f"{k}={v}" for k, v in SERVICE.items()),
                    "MODEL_FORMAT=tflite", check=False)  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip() == "error: MODEL_FORMAT='tflite' is not one of auto, bundle, onnx."


def test_the_slim_image_is_published_and_deployed_for_onnx_exports() -> None:
    deploy = workflow("deploy.yml")
    for trigger in ("workflow_call", "workflow_dispatch"):
        assert triggers(deploy)[trigger]["inputs"]["model_format"]["default"] == "auto"
    (render_step,) = [s for s in deploy["jobs"]["cloudrun"]["steps"] if "render.py" in s.get("run", "")]
    assert render_step["env"]["MODEL_FORMAT"] == "${{ inputs.model_format }}"
    assert (REPO_ROOT / "dockerfiles" / "api-onnx.Dockerfile").is_file()
