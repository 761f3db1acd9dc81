"""Model registry: pretrained backbones split into a frozen prefix and a trainable suffix.

``create(name, *, n_classes, pretrained=True, weights=None, seed=0, ...)`` returns a
``GlitchModel`` whose ``prefix`` (input adapter + frozen backbone, always in eval
mode) is computed once per input by ``glitchlib.features`` and whose ``suffix`` (the
trained layers) is what ``glitchlib.train.fit`` trains and TracIn differentiates.
SPEC.md section 1.  The tabular models ``mlp``, ``tabular_resnet`` and
``ft_transformer`` (SPEC.md section 9.7) have an identity prefix.
"""

from ._core import GlitchModel
from ._registry import EFFICIENTNET_LITE0_INPUT_SIZE, MODEL_NAMES, PAPER_WEIGHTS, create
from ._tabular import TABULAR_MODELS, TABULAR_SIZES, tabular_arguments
from ._weights import load_state_dict, weights_id

__all__ = [
    "EFFICIENTNET_LITE0_INPUT_SIZE",
    "GlitchModel",
    "MODEL_NAMES",
    "PAPER_WEIGHTS",
    "TABULAR_MODELS",
    "TABULAR_SIZES",
    "create",
    "load_state_dict",
    "tabular_arguments",
    "weights_id",
]
