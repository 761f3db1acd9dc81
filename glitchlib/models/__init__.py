"""Model registry: pretrained backbones split into a frozen prefix and a trainable suffix.

``create(name, n_classes, pretrained=True, weights=None, seed=0)`` returns a
``GlitchModel`` whose ``prefix`` (input adapter + frozen backbone, always in eval
mode) is computed once per input by ``glitchlib.features`` and whose ``suffix`` (the
trained layers) is what ``glitchlib.train.fit`` trains and TracIn differentiates.
SPEC.md section 1.  The tabular models ``mlp``, ``tabular_resnet`` and
``ft_transformer`` (SPEC.md section 9.7) have an identity prefix.
"""

from ._core import Adapted, GlitchModel, InputAdapter, LinearHead, influence_leaves
from ._registry import (
    EFFICIENTNET_LITE0_INPUT_SIZE,
    MODEL_NAMES,
    PAPER_WEIGHTS,
    create,
    efficientnet_lite0_weights_path,
    map_by_position,
)
from ._resnet import BasicBlock, CifarResNet, cifar_resnet20
from ._tabular import TABULAR_MODELS, TABULAR_SIZES, TabularNet, tabular_arguments
from ._weights import WeightsSpec, find_weights, load_state_dict, weights_id

__all__ = [
    "Adapted",
    "BasicBlock",
    "CifarResNet",
    "EFFICIENTNET_LITE0_INPUT_SIZE",
    "GlitchModel",
    "InputAdapter",
    "LinearHead",
    "MODEL_NAMES",
    "PAPER_WEIGHTS",
    "TABULAR_MODELS",
    "TABULAR_SIZES",
    "TabularNet",
    "WeightsSpec",
    "cifar_resnet20",
    "create",
    "efficientnet_lite0_weights_path",
    "find_weights",
    "influence_leaves",
    "load_state_dict",
    "tabular_arguments",
    "map_by_position",
    "weights_id",
]
