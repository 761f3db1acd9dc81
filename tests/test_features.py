"""Frozen-prefix features: suffix(prefix(x)) == model(x), and the disk cache."""

from __future__ import annotations

import pytest
import torch

from glitchlib import features, models

REGISTERED = [
    ("resnet20", {"pretrained": False, "freeze": True}),
    ("efficientnet_lite0", {}),  # the real ImageNet weights
    ("vit_b_16", {"pretrained": False, "freeze": True}),
    ("convnext_tiny", {"pretrained": False, "freeze": True}),
    ("timm:resnet10t", {"pretrained": False, "freeze": True}),
]


def images(n=2, channels=1, side=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, side, side, generator=g) * 2 - 1


@pytest.mark.parametrize("name,options", REGISTERED, ids=[n for n, _ in REGISTERED])
def test_suffix_of_cached_features_equals_model_output(name, options, tmp_path):
    model = models.create(name, n_classes=10, **options)
    x = images(2)
    with torch.no_grad():
        direct = model(x)
        cached = features.compute_features(model, x, batch_size=1, cache_dir=tmp_path, progress=False)
        again = features.compute_features(model, x, cache_dir=tmp_path, progress=False)
        via_suffix = model.suffix(again)
    assert torch.equal(cached, again)  # the second call read the cache
    torch.testing.assert_close(via_suffix, direct, rtol=1e-4, atol=1e-5)


def test_cache_is_read_instead_of_recomputing(tmp_path, monkeypatch):
    model = models.create("resnet20", n_classes=10, pretrained=False, freeze=True)
    x = images(5)
    first = features.compute_features(model, x, batch_size=2, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # no temporary file left behind

    def boom(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(features, "_forward", boom)
    assert torch.equal(features.compute_features(model, x, cache_dir=tmp_path, progress=False), first)
    with pytest.raises(AssertionError, match="recomputed"):  # other content: a cache miss
        features.compute_features(model, images(5, seed=1), cache_dir=tmp_path, progress=False)
    other = models.create("resnet20", n_classes=10, pretrained=False, freeze=True, seed=1)
    with pytest.raises(AssertionError, match="recomputed"):  # other weights: a cache miss
        features.compute_features(other, x, cache_dir=tmp_path, progress=False)


def test_key_depends_on_weights_size_and_content():
    model = models.create("resnet20", n_classes=10, pretrained=False, freeze=True)
    x = images(3)
    key = features._feature_cache_key(model, x)
    assert key["model"] == "resnet20" and key["weights_id"] == "random-seed0"
    assert features._feature_cache_key(model, x.clone()) == key
    assert features._feature_cache_key(model, images(3, seed=2)) != key
    resized = models.create("resnet20", n_classes=10, pretrained=False, freeze=True, input_size=32)
    assert features._feature_cache_key(resized, x) != key


def test_tensor_sha256_sees_content_dtype_and_shape():
    x = torch.arange(6, dtype=torch.float32)
    assert features._tensor_sha256(x) == features._tensor_sha256(x.clone())
    assert features._tensor_sha256(x) != features._tensor_sha256(x.reshape(2, 3))
    assert features._tensor_sha256(x) != features._tensor_sha256(x.double())
    assert features._tensor_sha256(torch.tensor(3)) != features._tensor_sha256(torch.tensor(4))


def test_unfrozen_model_features_are_the_inputs(tmp_path):
    model = models.create("resnet20", n_classes=10, pretrained=False)
    x = images(3)
    assert torch.equal(features.compute_features(model, x, cache_dir=tmp_path, progress=False), x)
    assert not any(tmp_path.iterdir())


def test_errors():
    model = models.create("resnet20", n_classes=10, pretrained=False, freeze=True)
    with pytest.raises(ValueError, match="prefix"):
        features.compute_features(torch.nn.Linear(2, 2), images(2))
    with pytest.raises(ValueError, match="batch_size"):
        features.compute_features(model, images(2), batch_size=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_features_match_cpu():
    model = models.create("efficientnet_lite0", n_classes=10)
    x = images(8)
    cpu = features.compute_features(model, x, progress=False)
    gpu = features.compute_features(model, x, device="cuda", progress=False)
    assert gpu.device.type == "cpu"
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)


def test_a_cache_dir_that_is_a_file_is_refused_naming_it(tmp_path):
    model = models.create("resnet20", n_classes=10, pretrained=False, freeze=True)
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(ValueError, match=r"^cache_dir='.*afile': exists and is not a directory; pass a directory"):
        features.compute_features(model, images(channels=3, side=32), cache_dir=afile, progress=False)
    assert afile.read_text() == ""
    with pytest.raises(ValueError, match=r"^cache_dir=3: need"):
        features.compute_features(model, images(channels=3, side=32), cache_dir=3, progress=False)
    new = tmp_path / "new" / "cache"  # a missing directory is created
    features.compute_features(model, images(channels=3, side=32), cache_dir=new, progress=False)
    assert len(list(new.glob("features_*.pt"))) == 1
