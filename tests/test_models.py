"""Model registry: weights lookup and loading, parameter layout, frozen prefix, seeded head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glitchlib import models
from glitchlib.models import _registry, _resnet, _weights

RESNET20_FILE = "cifar10_resnet20-4118986f.pt"
RESNET20_URL = ("https://github.com/chenyaofo/pytorch-cifar-models/releases/download/resnet/"
                "cifar10_resnet20-4118986f.pt")
TORCHVISION_FILES = {"vit_b_16": "vit_b_16-c867db91.pth", "convnext_tiny": "convnext_tiny-983f1562.pth"}


def resnet20_layout() -> list[tuple[str, tuple[int, ...]]]:
    """Keys and shapes of cifar10_resnet20-4118986f.pt, written out from the architecture.

    Stem conv 3->16 (3x3) + BN; three stages of three basic blocks (conv3x3, BN,
    conv3x3, BN) with 16, 32, 64 channels; a 1x1 conv + BN shortcut where the shape
    changes (first block of stages 2 and 3); fc 64 -> 10.
    """

    def bn(name, c):
        return [(f"{name}.weight", (c,)), (f"{name}.bias", (c,)), (f"{name}.running_mean", (c,)),
                (f"{name}.running_var", (c,)), (f"{name}.num_batches_tracked", ())]

    layout = [("conv1.weight", (16, 3, 3, 3)), *bn("bn1", 16)]
    for stage, (c_in, c) in enumerate([(16, 16), (16, 32), (32, 64)], start=1):
        for block in range(3):
            p, first_in = f"layer{stage}.{block}", c_in if block == 0 else c
            layout += [(f"{p}.conv1.weight", (c, first_in, 3, 3)), *bn(f"{p}.bn1", c),
                       (f"{p}.conv2.weight", (c, c, 3, 3)), *bn(f"{p}.bn2", c)]
            if block == 0 and c_in != c:
                layout += [(f"{p}.downsample.0.weight", (c, c_in, 1, 1)), *bn(f"{p}.downsample.1", c)]
    return layout + [("fc.weight", (10, 64)), ("fc.bias", (10,))]


def random_state(layout, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g)
    return state


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache; any download attempt fails the test."""
    directory = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(directory))

    def no_download(url, model_dir, filename):
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(_weights, "_download", no_download)
    return directory / "checkpoints"


# ------------------------------------------------------------------ resnet20 layout
def test_resnet20_names_and_shapes_equal_the_checkpoint():
    expected = resnet20_layout()
    got = [(k, tuple(v.shape)) for k, v in _resnet.cifar_resnet20().state_dict().items()]
    assert got == expected
    model = models.create("resnet20", n_classes=10, pretrained=False, freeze=True)
    split = {**model.prefix.state_dict(), **model.suffix.state_dict()}
    assert sorted((k, tuple(v.shape)) for k, v in split.items()) == sorted(expected)
    assert model.trained_layers == ["layer3.2", "fc"]
    assert model.influence_layers == ["layer3.2.conv1", "layer3.2.conv2", "fc"]
    assert model.head_layers == ["fc"]


@pytest.mark.parametrize("where", ["hub", "weights"])
def test_resnet20_loads_exactly_the_file(hub, tmp_path, where):
    state = random_state(resnet20_layout())
    path = hub / RESNET20_FILE if where == "hub" else tmp_path / "mine.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    model = models.create("resnet20", n_classes=5, weights=None if where == "hub" else path)
    loaded = {**model.prefix.state_dict(), **model.suffix.state_dict()}
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert model.suffix.fc.weight.shape == (5, 64)
    assert model.weights_id == _weights.weights_id(path)


# ------------------------------------------------------------------ torchvision models
@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory):
    """A weights file of each torchvision model's real layout, with random values."""
    import torchvision

    directory = tmp_path_factory.mktemp("tv")
    files = {}
    for name, filename in TORCHVISION_FILES.items():
        layout = [(k, tuple(v.shape)) for k, v in getattr(torchvision.models, name)().state_dict().items()]
        files[name] = directory / filename
        torch.save(random_state(layout, seed=1), files[name])
    return files


@pytest.mark.parametrize("name", ["vit_b_16", "convnext_tiny"])
@pytest.mark.parametrize("where", ["hub", "weights"])
def test_torchvision_loads_exactly_the_file(hub, torchvision_files, name, where):
    source = torchvision_files[name]
    if where == "hub":
        hub.mkdir(parents=True, exist_ok=True)
        (hub / TORCHVISION_FILES[name]).symlink_to(source)
    model = models.create(name, n_classes=3, weights=None if where == "hub" else source)
    state = torch.load(source, weights_only=True)
    head = "heads.head." if name == "vit_b_16" else "classifier.2."
    loaded = model.prefix.net.state_dict()
    compared = 0
    for key, value in state.items():
        if not key.startswith(head):
            assert torch.equal(loaded[key], value), key
            compared += 1
    assert compared == len(state) - 2
    assert model.suffix.fc.weight.shape == (3, 768) and model.input_size == 224


# ------------------------------------------------------------------ download and errors
def test_download_step_fills_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def fake_download(url, model_dir, filename):
        calls.append(url)
        model_dir.mkdir(parents=True, exist_ok=True)
        torch.save(random_state(resnet20_layout()), model_dir / filename)

    monkeypatch.setattr(_weights, "_download", fake_download)
    models.create("resnet20", n_classes=10)
    models.create("resnet20", n_classes=10)  # second time from the cache
    assert calls == [RESNET20_URL]


@pytest.mark.parametrize("name,filename,url", [
    ("resnet20", RESNET20_FILE, RESNET20_URL),
    ("vit_b_16", "vit_b_16-c867db91.pth", "https://download.pytorch.org/models/vit_b_16-c867db91.pth"),
    ("convnext_tiny", "convnext_tiny-983f1562.pth",
     "https://download.pytorch.org/models/convnext_tiny-983f1562.pth"),
])
def test_unreachable_weights_error_names_file_url_and_argument(tmp_path, monkeypatch, name, filename, url):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, model_dir, filename):
        raise OSError("Name or service not known")

    monkeypatch.setattr(_weights, "_download", offline)
    with pytest.raises(FileNotFoundError) as info:
        models.create(name, n_classes=10)
    message = str(info.value)
    assert filename in message and url in message and "weights=" in message


def test_probe_fails_fast_without_network(monkeypatch):
    def refuse(address, timeout):
        assert timeout <= 10
        raise OSError("unreachable")

    monkeypatch.setattr(_weights.socket, "create_connection", refuse)
    with pytest.raises(OSError):
        _weights._download(RESNET20_URL, None, RESNET20_FILE)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights="):
        models.create("resnet20", n_classes=10, weights=tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="weights="):
        models.create("efficientnet_lite0", n_classes=10, weights=tmp_path / "nope.pth")


def test_wrong_layout_and_bad_arguments_raise(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="bad.pt"):
        models.create("resnet20", n_classes=10, weights=path)
    with pytest.raises(ValueError, match="bad.pt"):
        models.create("efficientnet_lite0", n_classes=10, weights=path)
    with pytest.raises(ValueError, match="name="):
        models.create("resnet18", n_classes=10, pretrained=False)
    with pytest.raises(ValueError, match="pretrained=False"):
        models.create("resnet20", n_classes=10, pretrained=False, weights=path)
    with pytest.raises(ValueError, match="n_classes"):
        models.create("resnet20", n_classes=1, pretrained=False)
    with pytest.raises(ValueError, match="input_size"):
        models.create("vit_b_16", n_classes=10, pretrained=False, input_size=128)


def test_map_by_position_checks_count_and_shapes():
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    mapped = _registry.map_by_position({"x": torch.ones(2, 3), "y": torch.ones(4)}, target, source_name="f")
    assert list(mapped) == ["a", "b"] and torch.equal(mapped["b"], torch.ones(4))
    with pytest.raises(ValueError, match="y has shape"):
        _registry.map_by_position({"x": torch.ones(2, 3), "y": torch.ones(5)}, target, source_name="f")
    with pytest.raises(ValueError, match="1 tensors"):
        _registry.map_by_position({"x": torch.ones(2, 3)}, target, source_name="f")


# ------------------------------------------------------------------ efficientnet_lite0
def test_efficientnet_lite0_weights_give_the_expected_imagenet_classes():
    """The shipped ImageNet weights, mapped onto timm's layout, recognise sklearn's photos."""
    from sklearn.datasets import load_sample_images

    path = _registry.efficientnet_lite0_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    assert len(source) == 296 and next(iter(source)) == "_conv_stem.weight"
    model = models.create("efficientnet_lite0", n_classes=10, input_size=224)
    images = load_sample_images()
    names = [str(f).rsplit("/", 1)[-1] for f in images.filenames]
    x = torch.stack([torch.tensor(np.asarray(im)).permute(2, 0, 1).float() / 255 for im in images.images])
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        pooled = model.prefix((x - 0.5) / 0.5)
    logits = pooled @ source["_fc.weight"].T + source["_fc.bias"]
    top1 = dict(zip(names, logits.argmax(1).tolist()))
    assert top1 == {"china.jpg": 442, "flower.jpg": 985}  # bell cote, daisy
    assert model.weights_id == _weights.weights_id(path)


def test_efficientnet_lite0_structure():
    model = models.create("efficientnet_lite0", n_classes=7, pretrained=False, freeze=True)
    assert model.input_size == models.EFFICIENTNET_LITE0_INPUT_SIZE
    assert model.influence_layers == ["fc"] and model.head_layers == ["fc"]
    assert model.suffix.fc.in_features == 1280
    assert model.prefix.net.bn1.eps == pytest.approx(1e-3)  # TensorFlow batch norm epsilon


# ------------------------------------------------------------------ frozen prefix, heads
def test_prefix_frozen_and_in_eval_mode_suffix_trainable():
    model = models.create("resnet20", n_classes=10, pretrained=False, freeze=True).train()
    assert not any(p.requires_grad for p in model.prefix.parameters())
    assert all(p.requires_grad for p in model.suffix.parameters())
    assert not any(m.training for m in model.prefix.modules())
    assert all(m.training for m in model.suffix.modules())


def test_from_scratch_trains_every_layer():
    model = models.create("resnet20", n_classes=10, pretrained=False)
    assert isinstance(model.prefix, nn.Identity) and not model.frozen
    assert sum(p.numel() for p in model.suffix.parameters()) == sum(
        p.numel() for p in _resnet.cifar_resnet20().parameters())
    assert len(model.influence_layers) == 22 and model.head_layers == ["net.fc"]
    assert model.weights_id == "random-seed0"


def test_head_is_seeded_and_global_rng_untouched():
    before = torch.get_rng_state()
    a = models.create("resnet20", n_classes=10, pretrained=False, seed=3)
    b = models.create("resnet20", n_classes=10, pretrained=False, seed=3)
    c = models.create("resnet20", n_classes=10, pretrained=False, seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not torch.equal(a.suffix.net.fc.weight, c.suffix.net.fc.weight)
    head = models.create("efficientnet_lite0", n_classes=10, seed=3).suffix.fc
    assert head.weight.shape == (10, 1280)


def test_grey_images_are_repeated_to_three_channels():
    model = models.create("resnet20", n_classes=10, pretrained=False, freeze=True)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), model(x.repeat(1, 3, 1, 1)))
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(2, 2, 28, 28))


def test_timm_model_head_replaced():
    import timm

    model = models.create("timm:resnet10t", n_classes=4, pretrained=False, freeze=True)
    default = timm.create_model("resnet10t").pretrained_cfg["input_size"][-1]
    assert model.suffix.fc.out_features == 4 and model.input_size == default
    assert models.create("timm:resnet10t", n_classes=4, pretrained=False, input_size=64).input_size == 64
    scratch = models.create("timm:resnet10t", n_classes=4, pretrained=False)
    assert scratch.head_layers == ["net.fc"] and scratch.suffix.net.fc.out_features == 4


def test_timm_download_failure_names_the_weights_argument(monkeypatch):
    import timm

    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("offline")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(FileNotFoundError, match="weights=") as info:
        models.create("timm:resnet10t", n_classes=4)
    assert "resnet10t" in str(info.value)


def test_timm_weights_file_loads(tmp_path):
    import timm

    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in timm.create_model("resnet10t").state_dict().items()}
    path = tmp_path / "resnet10t.pth"
    torch.save(state, path)
    model = models.create("timm:resnet10t", n_classes=4, weights=path)
    assert torch.equal(model.prefix.net.conv1[0].weight, state["conv1.0.weight"])
    assert model.weights_id == _weights.weights_id(path)


def test_an_unknown_timm_model_is_refused_naming_the_name_argument():
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match=r"^name='timm:nonexistent': timm has no model 'nonexistent'; "
                                         r"timm.list_models\('\*name\*'\) lists the known names"):
        models.create("timm:nonexistent", n_classes=4, pretrained=False)
    assert _registry._unknown_timm_model("timm:resnet10t.a1_in1k") is None  # a pretrained tag names a model
