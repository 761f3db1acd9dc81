"""CIFAR ResNet-20 with the parameter names of the public ``cifar10_resnet20`` checkpoint.

The architecture is the one of He et al. (2016, section 4.2) as laid out by the
pytorch-cifar-models project: a 3x3 stem with 16 channels, three stages of three
basic blocks with 16, 32 and 64 channels (stride 2 at the start of stages 2 and
3, where a 1x1 convolution with batch norm projects the shortcut), global average
pooling and a linear classifier.  Its ``state_dict`` keys are exactly those of the
checkpoint ``cifar10_resnet20-4118986f.pt`` (``conv1.weight``, ``bn1.*``,
``layer1.0.conv1.weight``, ..., ``layer2.0.downsample.0.weight``, ..., ``fc.bias``),
so the file loads without renaming.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "CifarResNet", "cifar_resnet20"]


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or projected) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs (also runs on 28x28): stem, three stages, pool, ``fc``.

    Parameters
    ----------
    blocks_per_stage : int
        3 gives ResNet-20.
    n_classes : int
        Outputs of ``fc``.
    """

    def __init__(self, blocks_per_stage: int = 3, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = _conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = self._stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = self._stage(32, 64, blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(64, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_channels: int, channels: int, n_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_channels, channels, stride)]
        blocks += [BasicBlock(channels, channels) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def cifar_resnet20(n_classes: int = 10) -> CifarResNet:
    """ResNet-20 (3 blocks per stage, 0.27 M parameters) with random weights."""
    return CifarResNet(blocks_per_stage=3, n_classes=n_classes)
