"""The Kubernetes PyTorchJob spec runs the train image with a torchrun command that torchrun and Hydra accept."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf
from torch.distributed.run import get_args_parser

from tests.conftest import REPO_ROOT, ComposeFn

SPEC = REPO_ROOT / "deploy" / "pytorchjob.yaml"


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    return yaml.safe_load(SPEC.read_text())


def containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    replicas = job["spec"]["pytorchReplicaSpecs"]
    return {role: spec["template"]["spec"]["containers"][0] for role, spec in replicas.items()}


def test_it_is_a_kubeflow_pytorchjob_with_a_master_and_workers(job: dict[str, Any]) -> None:
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"}
    assert all(c["name"] == "pytorch" for c in containers(job).values())


def test_every_pod_runs_the_train_image_under_torchrun(job: dict[str, Any]) -> None:
    for container in containers(job).values():
        repository = container["image"].rsplit(":", 1)[0]
        assert repository.rsplit("/", 1)[-1] == "image-classifier-train"
        assert container["command"] == ["torchrun"]
        args = get_args_parser().parse_args(container["args"])
        assert args.module and args.training_script == "image_classifier.train"
        assert args.rdzv_backend == "c10d" and args.rdzv_endpoint == "$(MASTER_ADDR):$(MASTER_PORT)"


def test_the_topology_matches_the_pods_and_their_gpus(job: dict[str, Any]) -> None:
    nodes = sum(spec["replicas"] for spec in job["spec"]["pytorchReplicaSpecs"].values())
    for container in containers(job).values():
        args = get_args_parser().parse_args(container["args"])
        assert args.nnodes == str(nodes)
        assert int(args.nproc_per_node) == container["resources"]["limits"]["nvidia.com/gpu"]


def test_the_overrides_compose_and_the_global_batch_splits(job: dict[str, Any], compose_config: ComposeFn) -> None:
    container = containers(job)["Master"]
    args = get_args_parser().parse_args(container["args"])
    cfg = compose_config("train", args.training_script_args)
    OmegaConf.resolve(cfg)
    world = int(args.nnodes) * int(args.nproc_per_node)
    assert cfg.data.batch_size % world == 0
    assert cfg.trainer.device == "cuda" and cfg.trainer.sync_batchnorm


def test_no_secret_is_written_into_the_spec(job: dict[str, Any]) -> None:
    env = {item["name"]: item for item in containers(job)["Master"]["env"]}
    assert "value" not in env["WANDB_API_KEY"] and "secretKeyRef" in env["WANDB_API_KEY"]["valueFrom"]


def test_a_failed_process_or_lost_pod_restarts_and_resumes_from_the_shared_volume(job: dict[str, Any]) -> None:
    spec, container = job["spec"], containers(job)["Master"]
    assert spec["runPolicy"]["backoffLimit"] >= 1
    assert {replica["restartPolicy"] for replica in spec["pytorchReplicaSpecs"].values()} == {"OnFailure"}
    args = get_args_parser().parse_args(container["args"])
    assert int(args.max_restarts) >= 1
    assert int(dict(item.split("=") for item in args.rdzv_conf.split(","))["join_timeout"]) >= 60
    overrides = dict(arg.split("=", 1) for arg in args.training_script_args)
    assert overrides["trainer.resume"] == "auto" and int(overrides["trainer.checkpoint_every_n_steps"]) >= 1
    run_dir = overrides["hydra.run.dir"]
    assert "${" not in run_dir  # the same dir for every restart
    volumes = {v["name"]: v for v in spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["volumes"]}
    shared = [m["mountPath"] for m in container["volumeMounts"] if "persistentVolumeClaim" in volumes[m["name"]]]
    assert any(run_dir.startswith(f"{mount}/") for mount in shared)
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
