"""The frozen-prefix / trainable-suffix model and its small building blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GlitchModel", "InputAdapter", "LinearHead", "Adapted", "influence_leaves"]


class InputAdapter(nn.Module):
    """Match the images to a backbone: repeat grey to 3 channels, resize bilinearly.

    Parameters
    ----------
    channels : int
        Channels the backbone expects; a 1-channel input is repeated to this many.
    size : int, optional
        Square side the backbone expects; other sizes are resized (bilinear,
        ``align_corners=False``), as the paper does for ViT and ConvNeXt.  ``None``
        keeps the size (ResNet-20 runs on 28x28 and 32x32 alike).
    """

    def __init__(self, channels: int = 3, size: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected images N x C x H x W, got shape {tuple(x.shape)}")
        if x.shape[1] != self.channels:
            if x.shape[1] != 1:
                raise ValueError(
                    f"images have {x.shape[1]} channels; the model takes {self.channels} "
                    "(or 1, repeated)"
                )
            x = x.repeat(1, self.channels, 1, 1)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}"


class Adapted(nn.Module):
    """``net(adapter(x))``; holds the network as ``net`` so its names read ``net.<name>``."""

    def __init__(self, adapter: InputAdapter, net: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.adapter(x))


class LinearHead(nn.Module):
    """The new classifier on pooled features: ``fc = Linear(n_features, n_classes)``."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def influence_leaves(module: nn.Module, trained_layers: list[str]) -> list[str]:
    """Names of the ``Linear`` and ``Conv2d`` modules inside ``trained_layers`` (SPEC.md section 3).

    Also the FT-Transformer's numeric feature tokenizer (SPEC.md section 9.7;
    ``glitchlib.influence._layers.INFLUENCE_MODULE_TYPES``).  Names are relative to
    ``module``, in module order; ``""`` in ``trained_layers`` stands for the whole
    module.
    """
    from ..influence._layers import INFLUENCE_MODULE_TYPES

    names = []
    for name, sub in module.named_modules():
        if not isinstance(sub, INFLUENCE_MODULE_TYPES):
            continue
        if any(t == "" or name == t or name.startswith(t + ".") for t in trained_layers):
            names.append(name)
    return names


class GlitchModel(nn.Module):
    """A classifier split into a frozen ``prefix`` and a trainable ``suffix``.

    ``forward(x) = suffix(prefix(x))``.  The prefix holds the input adapter and the
    pretrained backbone; its parameters have ``requires_grad=False`` and it stays in
    eval mode even after ``model.train()``: batch-norm layers use their stored
    statistics and dropout / stochastic depth are off, so ``prefix(x)`` is a fixed
    function of ``x`` and can be computed once (``glitchlib.features``).  This
    differs from the paper's public code, which fine-tuned with the whole model in
    train mode (batch statistics and stochastic depth active in the frozen
    backbone).

    Attributes
    ----------
    prefix, suffix : nn.Module
        Frozen part and trainable part.  With ``pretrained=False`` and no
        freezing, the prefix is ``nn.Identity`` and the suffix the whole network.
    name : str
        Registry name, e.g. ``"efficientnet_lite0"``.
    n_classes : int
        Outputs of the new head.
    weights_id : str
        ``"sha256:<16 hex>"`` of the weights file, ``"timm:<tag>"`` for timm's own
        download, or ``"random-seed<seed>"`` for random weights.
    input_size : int or None
        Side the inputs are resized to inside the model (``None``: not resized).
    trained_layers : list of str
        Modules of the suffix that are trained, names relative to ``suffix``.
    influence_layers : list of str
        The ``Linear`` / ``Conv2d`` modules inside ``trained_layers`` whose weight
        and bias TracIn differentiates, relative to ``suffix``.
    head_layers : list of str
        The final ``Linear`` only, relative to ``suffix`` (the head-only option).
    pretrained, frozen : bool
        Whether the backbone has pretrained weights, and whether it is frozen.
    """

    def __init__(
        self,
        prefix: nn.Module,
        suffix: nn.Module,
        *,
        name: str,
        n_classes: int,
        weights_id: str,
        input_size: int | None,
        trained_layers: list[str],
        head_layers: list[str],
        pretrained: bool,
        frozen: bool,
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.suffix = suffix
        self.name = name
        self.n_classes = n_classes
        self.weights_id = weights_id
        self.input_size = input_size
        self.trained_layers = list(trained_layers)
        self.influence_layers = influence_leaves(suffix, self.trained_layers)
        self.head_layers = list(head_layers)
        self.pretrained = pretrained
        self.frozen = frozen
        for parameter in self.prefix.parameters():
            parameter.requires_grad_(False)
        for parameter in self.suffix.parameters():
            parameter.requires_grad_(True)
        self.train(False)

    def train(self, mode: bool = True) -> "GlitchModel":
        """Set the suffix's mode; the prefix always stays in eval mode."""
        super().train(mode)
        self.prefix.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(N, n_classes)``, for images ``(N, C, H, W)`` normalised to [-1, 1]."""
        return self.suffix(self.prefix(x))

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, n_classes={self.n_classes}, weights_id={self.weights_id!r}, "
            f"input_size={self.input_size}, frozen={self.frozen}"
        )
