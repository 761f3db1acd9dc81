"""Training: plain SGD, seeded checkpoints, frozen parts untouched, resume; training settings."""

from __future__ import annotations

import copy
import dataclasses

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glitchlib import features, models, settings, train
from glitchlib.settings import TrainSettings


def toy_data(n=60, d=5, n_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, n_classes, (n,), generator=g)
    return x, y


def head(d=5, n_classes=3, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Linear(d, n_classes)


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ the SGD step itself
def test_one_full_batch_epoch_is_one_plain_sgd_step():
    x, y = toy_data()
    model = head()
    lr = 0.3
    result = train.fit(model, x, y, None, None, settings=TrainSettings(lr=lr, batch_size=len(x), epochs=1),
                       progress=False)
    # oracle: gradient of mean cross-entropy of a linear model, by hand
    w, b = model.weight.detach(), model.bias.detach()
    p = torch.softmax(x @ w.T + b, dim=1)
    residual = (p - F.one_hot(y, 3).float()) / len(x)
    expected_w, expected_b = w - lr * residual.T @ x, b - lr * residual.sum(0)
    state = result.checkpoints[0].state_dict
    torch.testing.assert_close(state["weight"], expected_w)
    torch.testing.assert_close(state["bias"], expected_b)
    assert result.checkpoints[0].learning_rate == lr
    assert torch.equal(model.weight, w)  # the suffix passed in is not modified


def test_history_and_checkpoints_shape():
    x, y = toy_data()
    result = train.fit(head(), x, y, x[:20], y[:20], settings=TrainSettings(lr=0.1, batch_size=16, epochs=3),
                       progress=False)
    assert len(result.checkpoints) == 3
    assert list(result.history.columns) == ["epoch", "train_loss", "train_acc", "val_acc"]
    assert result.history["epoch"].tolist() == [1, 2, 3]
    assert result.history[["train_acc", "val_acc"]].stack().between(0, 1).all()
    for checkpoint in result.checkpoints:
        assert all(v.device.type == "cpu" for v in checkpoint.state_dict.values())
        assert checkpoint.learning_rate == pytest.approx(0.1)
    assert states_equal(result.checkpoints[-1].state_dict, result.final_model.state_dict())
    assert not result.final_model.training
    acc = train.evaluate_accuracy(result.final_model, x[:20], y[:20])
    assert acc == pytest.approx(result.history["val_acc"].iloc[-1])


# ------------------------------------------------------------------ frozen vs trained
def test_frozen_prefix_unchanged_and_trained_layers_change():
    model = models.create("resnet20", n_classes=4, pretrained=False, freeze=True)
    before = copy.deepcopy(model.state_dict())
    x = torch.rand(40, 1, 28, 28) * 2 - 1
    y = torch.arange(40) % 4
    f = features.compute_features(model, x, progress=False)
    suffix = copy.deepcopy(model.suffix)
    suffix.fc.weight.requires_grad_(False)  # a parameter excluded from training stays put
    result = train.fit(suffix, f, y, None, None, settings=TrainSettings(lr=0.5, batch_size=8, epochs=1),
                       progress=False)
    model.suffix.load_state_dict(result.checkpoints[-1].state_dict)
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("prefix."):
            assert torch.equal(after[key], value), key
    for name in ("suffix.layer3.2.conv1.weight", "suffix.layer3.2.bn2.bias", "suffix.fc.bias"):
        assert not torch.equal(after[name], before[name]), name
    assert torch.equal(after["suffix.fc.weight"], before["suffix.fc.weight"])
    # batch norm of the suffix trains in train mode: running statistics were updated
    assert not torch.equal(after["suffix.layer3.2.bn1.running_mean"], before["suffix.layer3.2.bn1.running_mean"])


# ------------------------------------------------------------------ seeds and resume
def test_same_seed_same_checkpoints_other_seed_other_order():
    x, y = toy_data()
    s = TrainSettings(lr=0.2, batch_size=8, epochs=2)
    before = torch.get_rng_state()
    a = train.fit(head(), x, y, None, None, settings=s, seed=1, progress=False)
    b = train.fit(head(), x, y, None, None, settings=s, seed=1, progress=False)
    c = train.fit(head(), x, y, None, None, settings=s, seed=2, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(states_equal(p.state_dict, q.state_dict) for p, q in zip(a.checkpoints, b.checkpoints))
    assert not states_equal(a.checkpoints[-1].state_dict, c.checkpoints[-1].state_dict)
    pd.testing.assert_frame_equal(a.history, b.history)


def test_interrupted_run_resumes_to_identical_checkpoints(tmp_path):
    x, y = toy_data(n=50)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))
    full = train.fit(model, x, y, x[:10], y[:10], settings=TrainSettings(lr=0.1, batch_size=16, epochs=4),
                     seed=5, progress=False)
    train.fit(model, x, y, x[:10], y[:10], settings=TrainSettings(lr=0.1, batch_size=16, epochs=2),
              seed=5, checkpoint_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checksums.json", "epoch_001.pt", "epoch_002.pt"]
    resumed = train.fit(model, x, y, x[:10], y[:10], settings=TrainSettings(lr=0.1, batch_size=16, epochs=4),
                        seed=5, checkpoint_dir=tmp_path, progress=False)
    assert len(resumed.checkpoints) == 4
    for p, q in zip(full.checkpoints, resumed.checkpoints):
        assert states_equal(p.state_dict, q.state_dict) and p.learning_rate == q.learning_rate
    pd.testing.assert_frame_equal(full.history, resumed.history)
    stored = train.load_checkpoints(tmp_path)
    assert all(states_equal(p.state_dict, q.state_dict) for p, q in zip(stored, full.checkpoints))
    # asking for fewer epochs reuses the saved ones
    short = train.fit(model, x, y, x[:10], y[:10], settings=TrainSettings(lr=0.1, batch_size=16, epochs=3),
                      seed=5, checkpoint_dir=tmp_path, progress=False)
    assert len(short.checkpoints) == 3 and states_equal(short.checkpoints[2].state_dict,
                                                         full.checkpoints[2].state_dict)


def test_checkpoint_dir_of_another_run_is_refused(tmp_path):
    x, y = toy_data()
    s = TrainSettings(lr=0.1, batch_size=16, epochs=1)
    train.fit(head(), x, y, None, None, settings=s, seed=0, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train.fit(head(), x, y, None, None, settings=s, seed=1, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train.fit(head(), x, y, None, None, settings=dataclasses.replace(s, lr=0.2), checkpoint_dir=tmp_path,
                  progress=False)


def test_input_errors():
    x, y = toy_data()
    s = TrainSettings(lr=0.1)
    with pytest.raises(ValueError, match="y_train"):
        train.fit(head(), x, y[:-1], None, None, settings=s, progress=False)
    with pytest.raises(ValueError, match="int64"):
        train.fit(head(), x, y.float(), None, None, settings=s, progress=False)
    with pytest.raises(ValueError, match="x_test"):
        train.fit(head(), x, y, x, None, settings=s, progress=False)
    with pytest.raises(FileNotFoundError, match="checkpoint_dir"):
        train.load_checkpoints("/nonexistent/dir")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_training_matches_cpu():
    x, y = toy_data(n=64)
    s = TrainSettings(lr=0.1, batch_size=16, epochs=2)
    cpu = train.fit(head(), x, y, x, y, settings=s, progress=False)
    gpu = train.fit(head(), x, y, x, y, settings=s, device="cuda", progress=False)
    for p, q in zip(cpu.checkpoints, gpu.checkpoints):
        for k in p.state_dict:
            torch.testing.assert_close(q.state_dict[k], p.state_dict[k], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ settings
PAPER_TABLE = """\
mnist resnet20 0.01 128 7
mnist vit_b_16 0.1 128 2
mnist convnext_tiny 0.05 128 2
fmnist resnet20 0.01 128 7
fmnist vit_b_16 0.1 128 2
fmnist convnext_tiny 0.1 128 4
cifar10 resnet20 0.01 128 7
cifar10 vit_b_16 0.1 128 4
cifar10 convnext_tiny 0.1 128 3"""


def test_paper_table_is_spec_section_1():
    rows = [line.split() for line in PAPER_TABLE.splitlines()]
    assert len(settings.PAPER_TRAINING) == 9
    for dataset, model, lr, batch, epochs in rows:
        s = settings.training_settings(dataset, model)
        assert (s.lr, s.batch_size, s.epochs, s.source) == (float(lr), int(batch), int(epochs), "paper")


def test_public_code_discrepancy_and_own_settings():
    for dataset in ("mnist", "fmnist"):
        assert settings.training_settings(dataset, "resnet20", variant="public-code").lr == 0.1
        own = settings.training_settings(dataset, "efficientnet_lite0")
        assert own.source == "sweep" and own.notes
    assert settings.training_settings("fmnist", "resnet20", pretrained=False).source == "sweep"
    for dataset in ("mnist", "cifar10"):
        assert settings.training_settings(dataset, "resnet20", pretrained=False).source == "not swept"
    assert settings.training_settings("cifar10", "resnet20", variant="public-code").lr == 0.01


def test_settings_errors_and_frozen_dataclass():
    with pytest.raises(ValueError, match="model='timm:resnet18'"):
        settings.training_settings("fmnist", "timm:resnet18")
    with pytest.raises(ValueError, match="dataset='svhn'"):
        settings.training_settings("svhn", "resnet20")
    with pytest.raises(ValueError, match="variant"):
        settings.training_settings("fmnist", "resnet20", variant="blog")
    with pytest.raises(ValueError, match="lr"):
        TrainSettings(lr=0)
    s = TrainSettings(lr=0.1, batch_size=32, epochs=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lr = 1.0
    assert s.to_dict() == {"lr": 0.1, "batch_size": 32, "epochs": 3, "source": "user", "notes": ""}


def test_resume_starts_from_the_last_checkpoint_that_matches_its_sha256(tmp_path, caplog):
    x, y = toy_data(n=50)
    s = TrainSettings(lr=0.1, batch_size=16, epochs=3)
    full = train.fit(head(), x, y, None, None, settings=s, seed=2, checkpoint_dir=tmp_path, progress=False)
    reference = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    damaged = bytearray(reference["epoch_002.pt"])
    damaged[len(damaged) // 2] ^= 0x01  # same size, other bytes: it still loads
    (tmp_path / "epoch_002.pt").write_bytes(bytes(damaged))
    with caplog.at_level("WARNING", logger="glitchlib.train"):
        resumed = train.fit(head(), x, y, None, None, settings=s, seed=2, checkpoint_dir=tmp_path, progress=False)
    assert "epoch 2" in caplog.text and "[2, 3]" in caplog.text
    assert all(states_equal(p.state_dict, q.state_dict) for p, q in zip(full.checkpoints, resumed.checkpoints))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == reference  # same bytes again

    (tmp_path / train.CHECKSUMS_FILE).unlink()  # nothing can be verified: trained from scratch
    again = train.fit(head(), x, y, None, None, settings=s, seed=2, checkpoint_dir=tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == reference
    pd.testing.assert_frame_equal(again.history, full.history)


@pytest.mark.parametrize("extra", [{"momentum": 0.9}, {"weight_decay": 1e-4}, {"learning_rate": 0.1}])
def test_fit_refuses_a_settings_key_it_does_not_know_naming_it(extra):
    torch.manual_seed(0)
    head, x, y = nn.Linear(3, 2), torch.randn(8, 3), torch.randint(0, 2, (8,))
    values = {"lr": 0.1, "batch_size": 8, "epochs": 1, **extra}
    key = next(iter(extra))
    with pytest.raises(ValueError, match=rf"^settings=.*unknown key\(s\) '{key}'; the accepted keys are "
                                         r"lr, batch_size, epochs, source, notes"):
        train.fit(head, x, y, None, None, settings=values, progress=False)
    # TrainSettings' own fields, as its to_dict gives them, are accepted
    as_dict = TrainSettings(lr=0.1, batch_size=8, epochs=1).to_dict()
    assert len(train.fit(head, x, y, None, None, settings=as_dict, progress=False).checkpoints) == 1
