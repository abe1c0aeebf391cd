from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from iris.embed.backbones import build_pixel_net
from iris.embed.finetune import finetune, load_checkpoint, one_cycle, save_checkpoint, split_heldout
from iris.errors import InputError, ModelError

torch.set_num_threads(1)  # 2 cores shared by several test runs: more threads only spin
SIZE = 32


def digits_pixels(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Handwritten 0s and 1s from scikit-learn, upscaled to SIZE px RGB: (n, SIZE, SIZE, 3), (n,)."""
    digits = load_digits()
    index = np.concatenate([np.flatnonzero(digits.target == c)[:per_class] for c in (0, 1)])
    pixels = np.stack(
        [
            np.array(
                Image.fromarray((digits.images[i] * 15.9).astype(np.uint8))
                .resize((SIZE, SIZE))
                .convert("RGB")
            )
            for i in index
        ]
    )
    return pixels, digits.target[index].astype(np.int64)


@pytest.mark.parametrize(
    ("labels", "heldout_per_class"),
    [([0] * 10 + [1] * 10, 2), ([0] * 3 + [1] * 17, 1), ([0] * 50 + [1] * 5, 10)],
)
def test_split_is_stratified_and_disjoint(labels: list[int], heldout_per_class: int) -> None:
    y = np.array(labels)
    train, heldout = split_heldout(y, fraction=0.2, seed=0)
    assert set(train).isdisjoint(heldout)
    assert sorted([*train, *heldout]) == list(range(len(y)))
    for cls in (0, 1):
        assert (y[heldout] == cls).sum() >= 1
        assert (y[train] == cls).sum() >= 1
    assert (y[heldout] == 0).sum() == max(1, round(0.2 * (y == 0).sum()))
    assert split_heldout(y, fraction=0.2, seed=0)[1].tolist() == heldout.tolist()


def test_split_without_two_per_class_has_no_heldout() -> None:
    train, heldout = split_heldout(np.array([0, 1, 1, 1]), fraction=0.2, seed=0)
    assert len(heldout) == 0 and len(train) == 4


def test_one_epoch_changes_the_backbone_and_is_seeded() -> None:
    pixels, labels = digits_pixels(8)
    states = []
    for _ in range(2):
        torch.manual_seed(123)  # same initial weights for both runs
        net = build_pixel_net("efficientnet_lite0", weights="none", image_size=SIZE)
        before = net.state_dict()["features.net._conv_stem.weight"].clone()
        result = finetune(net, pixels, labels, epochs=1, batch_size=8, seed=5)
        assert not torch.equal(before, net.state_dict()["features.net._conv_stem.weight"])
        assert not net.training
        states.append(net.state_dict()["features.net._conv_stem.weight"])
    assert torch.allclose(states[0], states[1])
    assert result.train_size + result.heldout_size == 16
    assert result.heldout_size == 4  # round(0.2 * 8) = 2 per class
    assert result.heldout_accuracy is not None and 0.0 <= result.heldout_accuracy <= 1.0
    assert [row["epoch"] for row in result.history] == [1.0]


def test_one_epoch_on_200_labels_does_not_divide_by_zero() -> None:
    """Issue 11: 200 labels, finetune_epochs = 1 gave 160 train images, 5 batches of 32, and
    OneCycleLR's warmup of exactly one step divided by zero."""
    pixels, labels = digits_pixels(100)
    torch.manual_seed(0)
    net = build_pixel_net("resnet18", weights="none", image_size=SIZE)
    result = finetune(net, pixels, labels, epochs=1, batch_size=32, seed=0)
    assert (result.train_size, result.heldout_size) == (160, 40)
    assert [row["epoch"] for row in result.history] == [1.0]
    assert np.isfinite(result.history[0]["loss"])


@pytest.mark.parametrize("total", [*range(1, 13), 15, 40, 41, 199])
def test_one_cycle_steps_through_any_length(total: int) -> None:
    head, body = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [head], "lr": 1e-3}, {"params": [body], "lr": 2e-4}])
    scheduler = one_cycle(optimizer, max_lr=[1e-3, 2e-4], total_steps=total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(rates) == pytest.approx(1e-3)  # the peak is reached however short the run
    assert all(0 < r <= 1e-3 * (1 + 1e-9) for r in rates)
    if total >= 3:
        assert rates[0] < rates[1]  # a warmup of at least one rising step


def test_one_cycle_keeps_the_old_warmup_where_it_worked() -> None:
    """40 steps (8 epochs x 5 batches, the demo's fine-tune): warmup 8 steps, as pct_start=0.2."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1e-3)
    scheduler = one_cycle(optimizer, max_lr=[1e-3], total_steps=40)
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3),
        max_lr=1e-3,
        total_steps=40,
        pct_start=0.2,
    )
    assert scheduler.state_dict()["_schedule_phases"] == reference.state_dict()["_schedule_phases"]


def test_zero_epochs_keeps_the_weights() -> None:
    net = build_pixel_net("resnet18", weights="none", image_size=SIZE)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = finetune(net, np.zeros((0, SIZE, SIZE, 3), np.uint8), np.zeros(0), epochs=0)
    assert result.heldout_accuracy is None and result.epochs == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_ground_truth_with_one_class_is_refused() -> None:
    pixels, labels = digits_pixels(3)
    net = build_pixel_net("resnet18", weights="none", image_size=SIZE)
    with pytest.raises(InputError, match="found 3 of class 0 and 0 of class 1"):
        finetune(net, pixels[:3], labels[:3], epochs=1)
    with pytest.raises(InputError, match="labels must be 0/1"):
        finetune(net, pixels, labels + 1, epochs=1)
    with pytest.raises(ModelError, match="expected >= 0"):
        finetune(net, pixels, labels, epochs=-1)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    pixels, labels = digits_pixels(4)
    net = build_pixel_net("efficientnet_lite0", weights="none", image_size=SIZE)
    result = finetune(net, pixels, labels, epochs=0)
    path = save_checkpoint(
        net, tmp_path / "models" / "embedder.pt", image_size=SIZE, weights="none", result=result
    )
    again = load_checkpoint(path)
    batch = torch.from_numpy(pixels)
    with torch.no_grad():
        assert torch.allclose(net(batch), again(batch), atol=1e-6)
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an iris embedder checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
