"""Distributed helpers: global batch and LR scaling, worker sizing, and real 2-process gloo collectives."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from image_classifier.config.resolvers import launch_time
from image_classifier.data.loaders import resolve_num_workers
from image_classifier.data.samplers import sampler_for, set_epoch, start_at_batch
from image_classifier.distributed import mean_over_ranks, per_rank_batch_size, wrap_model
from image_classifier.errors import ConfigError
from image_classifier.optim import optimizer_kwargs, scaled_lr
from image_classifier.prediction import predict
from tests.helpers import lost_peer


@pytest.mark.parametrize(("rule", "expected"), [("none", 0.1), ("linear", 0.4), ("sqrt", 0.2)])
def test_lr_scales_from_the_reference_batch_to_the_global_batch(rule: str, expected: float) -> None:
    assert scaled_lr(0.1, global_batch_size=256, base_batch_size=64, rule=rule) == pytest.approx(expected)


def test_optimizer_kwargs_are_what_timm_takes() -> None:
    cfg = {"opt": "sgd", "lr": 0.05, "momentum": 0.9, "lr_scaling": "linear", "lr_base_batch_size": 32}
    assert optimizer_kwargs(cfg, global_batch_size=128) == {"opt": "sgd", "lr": pytest.approx(0.2), "momentum": 0.9}


def test_an_unknown_scaling_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lr_scaling=cubic"):
        scaled_lr(0.1, 64, 32, "cubic")


def test_the_global_batch_must_split_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert per_rank_batch_size(64) == 16
    with pytest.raises(ConfigError, match="does not split evenly over 4 processes"):
        per_rank_batch_size(30)


def test_auto_workers_share_the_cpus_among_local_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_num_workers(3) == 3
    single = resolve_num_workers("auto")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")
    assert 0 <= resolve_num_workers("auto") <= single <= 8


def test_auto_workers_leave_a_cpu_model_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model on the CPU keeps the cores its threads run on; a GPU model leaves all but one to the workers."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(12)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 12)
    assert resolve_num_workers("auto", torch.device("cpu")) == 0
    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    assert resolve_num_workers("auto", torch.device("cpu")) == 6
    assert resolve_num_workers("auto", torch.device("cuda")) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve_num_workers("auto", torch.device("cuda")) == 2
    assert resolve_num_workers(2, torch.device("cpu")) == 2


def test_launch_time_outside_torchrun_is_the_clock() -> None:
    assert launch_time("%Y") == datetime.now().strftime("%Y")
    assert launch_time("%H-%M-%S-%f") != launch_time("%H-%M-%S-%f")


class _Recorded(Dataset):
    """Ten samples that remember which of them were loaded."""

    def __init__(self) -> None:
        self.loaded: list[int] = []

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> int:
        self.loaded.append(index)
        return index


def _train_loader(dataset: Dataset, workers: int = 0) -> DataLoader:
    sampler = sampler_for(dataset, training=True, seed=0)
    return DataLoader(
        dataset, batch_size=2, sampler=sampler, drop_last=True, num_workers=workers, persistent_workers=workers > 0
    )


def _passes(loader: DataLoader, epochs: list[int]) -> list[list[list[int]]]:
    passes = []
    for epoch in epochs:
        set_epoch({"train": loader}, epoch)
        passes.append([batch.tolist() for batch in loader])
    return passes


def test_each_epoch_has_its_own_order_which_a_pass_started_at_a_batch_continues() -> None:
    dataset = _Recorded()
    full = _passes(_train_loader(dataset), [0, 1, 2])
    assert sorted(i for batch in full[0] for i in batch) == list(range(10)) and full[0] != full[1]

    fresh = _Recorded()
    resumed = _train_loader(fresh)  # a new process: the order comes from the seed and the epoch alone
    set_epoch({"train": resumed}, 1)
    start_at_batch(resumed, 3)
    assert len(resumed) == 2
    rest = [batch.tolist() for batch in resumed]
    assert rest == full[1][3:]
    assert sorted(fresh.loaded) == sorted(i for batch in rest for i in batch)  # the skipped: never loaded
    assert _passes(resumed, [2]) == [full[2]] and len(resumed) == 5  # the next pass is whole


def test_the_order_does_not_depend_on_the_loaders_workers() -> None:
    """Persistent workers draw their seeds once per process, not per epoch: the order must not come from there."""
    assert _passes(_train_loader(_Recorded(), workers=1), [0, 1, 2]) == _passes(_train_loader(_Recorded()), [0, 1, 2])


def test_only_a_resumable_training_loader_starts_inside_an_epoch() -> None:
    loader = DataLoader(TensorDataset(torch.arange(4)), batch_size=2)
    start_at_batch(loader, 0)
    with pytest.raises(TypeError, match="ResumableSampler"):
        start_at_batch(loader, 1)


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _tiny_batch(rank: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Four fixed samples; ``rank`` 0 or 1 gets its half of them."""
    features = torch.linspace(-1, 1, 12).reshape(4, 3)
    targets = torch.tensor([0, 1, 1, 0])
    part = slice(None) if rank is None else slice(2 * rank, 2 * rank + 2)
    return features[part], targets[part]


def _sgd_step(model: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The flat parameters after one SGD step on the mean cross-entropy of the batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    nn.functional.cross_entropy(model(features), targets).backward()
    optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # 7 samples over 2 ranks: the sampler pads one duplicate that must not be counted
        features = torch.arange(7, dtype=torch.float32).unsqueeze(1)
        dataset = TensorDataset(features, torch.arange(7) % 3)
        eval_loader = DataLoader(dataset, batch_size=2, sampler=sampler_for(dataset, training=False, seed=0))
        model = nn.Linear(1, 3)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[1.0], [2.0], [3.0]]))
            model.bias.zero_()
        logits, targets = predict(model, eval_loader, device=torch.device("cpu"), precision="32")

        train_loader = DataLoader(dataset, batch_size=2, sampler=sampler_for(dataset, training=True, seed=0))
        orders = []
        for epoch in (0, 1):
            set_epoch({"train": train_loader}, epoch)
            orders.append([int(x) for batch in train_loader for x in batch[0].flatten()])
        set_epoch({"train": train_loader}, 1)
        start_at_batch(train_loader, 1)
        resumed = [int(x) for batch in train_loader for x in batch[0].flatten()]

        bn_model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        try:
            wrap_model(bn_model, torch.device("cpu"), sync_batchnorm=True)
            sync_bn_error = ""
        except ConfigError as error:
            sync_bn_error = str(error)
        result = {
            "ddp_step": _sgd_step(wrap_model(_tiny_net(), torch.device("cpu")), *_tiny_batch(rank)).tolist(),
            "logits": logits.tolist(),
            "targets": targets.tolist(),
            "mean": mean_over_ranks({"loss": float(rank + 1), "accuracy": 0.5 * rank}),
            "orders": orders,
            "resumed": resumed,
            "sync_bn_error": sync_bn_error,
            "ddp": type(wrap_model(nn.Linear(1, 1), torch.device("cpu"))).__name__,
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """What each of two real gloo ranks computed with the helpers."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(2, str(tmp / "init"), str(tmp)), nprocs=2, join=True, start_method="spawn")
    return [json.loads((tmp / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_gathered_predictions_equal_a_single_process_run(two_ranks: list[dict]) -> None:
    expected = torch.arange(7, dtype=torch.float32).unsqueeze(1) * torch.tensor([1.0, 2.0, 3.0])
    for result in two_ranks:
        assert torch.allclose(torch.tensor(result["logits"]), expected)
        assert result["targets"] == [i % 3 for i in range(7)]


def test_a_ddp_step_on_two_halves_equals_one_step_on_the_global_batch(two_ranks: list[dict]) -> None:
    expected = _sgd_step(_tiny_net(), *_tiny_batch())
    for result in two_ranks:
        assert torch.allclose(torch.tensor(result["ddp_step"]), expected, atol=1e-6)


def test_metrics_are_averaged_over_ranks(two_ranks: list[dict]) -> None:
    for result in two_ranks:
        assert result["mean"] == pytest.approx({"loss": 1.5, "accuracy": 0.25})


def test_ranks_train_on_disjoint_shards_reshuffled_every_epoch(two_ranks: list[dict]) -> None:
    epoch0 = [set(result["orders"][0]) for result in two_ranks]
    assert not epoch0[0] & epoch0[1]  # drop_last: 3 samples each, none shared
    assert all(len(shard) == 3 for shard in epoch0)
    assert any(result["orders"][0] != result["orders"][1] for result in two_ranks)


def test_a_shard_started_at_a_batch_continues_the_epochs_shard(two_ranks: list[dict]) -> None:
    for result in two_ranks:
        assert result["resumed"] == result["orders"][1][2:]  # batch 1 of 2 samples


def test_sync_batchnorm_is_refused_on_cpu_and_models_are_wrapped_in_ddp(two_ranks: list[dict]) -> None:
    for result in two_ranks:
        assert "needs CUDA" in result["sync_bn_error"]
        assert result["ddp"] == "DistributedDataParallel"


@pytest.mark.parametrize(
    ("how", "reason"),
    [("exit", "lost its connection to another process"), ("hang", "no answer from the other processes within")],
)
def test_a_dead_or_silent_peer_is_one_line_within_the_timeout(how: str, reason: str, tmp_path: Path) -> None:
    mp.start_processes(lost_peer.run, args=(str(tmp_path / "init"), str(tmp_path), how), nprocs=2, start_method="spawn")
    seen = json.loads((tmp_path / f"{how}.json").read_text())
    assert reason in seen["message"] and "\n" not in seen["message"], seen
    assert seen["message"].startswith("rank 0: ")
    assert seen["seconds"] < lost_peer.TIMEOUT_S + 1.5
