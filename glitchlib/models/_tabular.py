"""The deep tabular models of Gorishniy et al. (NeurIPS 2021), trained whole (SPEC.md section 9.7).

Built with the reference implementation, ``rtdl_revisiting_models`` (PyPI
``rtdl-revisiting-models``), at the sizes that package documents as its defaults:

=================== ===============================================================
``mlp``             ``MLP(n_blocks=2, d_block=384, dropout=0.1)``: the package's
                    README example.
``tabular_resnet``  ``ResNet(n_blocks=2, d_block=192, d_hidden_multiplier=2.0,
                    dropout1=0.15, dropout2=0.0)``: the package's README example.
``ft_transformer``  ``FTTransformer.get_default_kwargs(n_blocks=1)``: one block of
                    width 96, 8 heads, attention dropout 0.1, ReGLU feed-forward of
                    hidden width 128; the smallest of the paper's default
                    configurations (1 to 6 blocks), meant for small data.
=================== ===============================================================

No pretrained weights exist: the prefix is the identity and the whole network is
the trainable suffix, so the features stage passes the preprocessed table through
unchanged.

What TracIn differentiates (``GlitchModel.influence_layers``; SPEC.md section
9.7): the weight and bias of every ``Linear`` (the MLP's blocks and head; the
ResNet's input projection, both layers of each block and head; the
FT-Transformer's attention projections ``W_q``, ``W_k``, ``W_v``, ``W_out``, both
feed-forward layers and head) and of the FT-Transformer's numeric feature
tokenizer (``cont_embeddings``, one ``Linear(1, d)`` per feature).  Trained but
not differentiated: the BatchNorm / LayerNorm parameters and the
FT-Transformer's [CLS] token.
"""

from __future__ import annotations

import torch
from torch import nn

from ..settings import TABULAR_MODELS

__all__ = ["TABULAR_MODELS", "TABULAR_SIZES", "TabularNet", "build_tabular", "tabular_arguments"]


#: Constructor arguments of each model (besides input and output widths).
TABULAR_SIZES: dict[str, dict[str, object]] = {
    "mlp": {"n_blocks": 2, "d_block": 384, "dropout": 0.1},
    "tabular_resnet": {"n_blocks": 2, "d_block": 192, "d_hidden": None, "d_hidden_multiplier": 2.0,
                       "dropout1": 0.15, "dropout2": 0.0},
    "ft_transformer": {"n_blocks": 1},  # FTTransformer.get_default_kwargs(n_blocks=1)
}

#: The final ``Linear`` of each model, relative to ``TabularNet`` (the head-only option).
_HEADS = {"mlp": "net.output", "tabular_resnet": "net.output.linear",
          "ft_transformer": "net.backbone.output.linear"}


class TabularNet(nn.Module):
    """One ``rtdl_revisiting_models`` network taking a float table ``(N, n_features)``.

    ``FTTransformer`` takes ``(x_cont, x_cat)``; every feature here is numeric
    (quantile-transformed), so ``forward(x)`` calls ``net(x, None)``.  The network is
    held as ``net`` so that its module names read ``net.<name>``.
    """

    def __init__(self, net: nn.Module, n_features: int, *, tokenized: bool) -> None:
        super().__init__()
        self.net = net
        self.n_features = n_features
        self.tokenized = tokenized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected a table N x {self.n_features}, got shape {tuple(x.shape)}")
        return self.net(x, None) if self.tokenized else self.net(x)


def tabular_arguments(name: str) -> dict[str, object]:
    """Constructor arguments of tabular model ``name`` besides its input and output widths.

    For ``ft_transformer`` these are ``FTTransformer.get_default_kwargs(n_blocks=1)``.
    """
    import rtdl_revisiting_models as rtdl

    if name not in TABULAR_MODELS:
        raise ValueError(f"name={name!r} is not a tabular model; choose one of {', '.join(TABULAR_MODELS)}.")
    if name != "ft_transformer":
        return dict(TABULAR_SIZES[name])
    kwargs = rtdl.FTTransformer.get_default_kwargs(**TABULAR_SIZES[name])
    return {k: v for k, v in kwargs.items() if not k.startswith("_")}


def build_tabular(name: str, n_features: int, n_classes: int, seed: int) -> tuple[TabularNet, str]:
    """The network ``name`` with random weights drawn from ``seed``, and its head's name.

    Raises
    ------
    ValueError
        Unknown ``name`` or ``n_features`` not a positive integer.
    """
    import rtdl_revisiting_models as rtdl

    if name not in TABULAR_MODELS:
        raise ValueError(f"name={name!r} is not a tabular model; choose one of {', '.join(TABULAR_MODELS)}.")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"n_features={n_features!r}: need the number of table columns (a positive integer).")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "mlp":
            net = rtdl.MLP(d_in=n_features, d_out=n_classes, **TABULAR_SIZES[name])
        elif name == "tabular_resnet":
            net = rtdl.ResNet(d_in=n_features, d_out=n_classes, **TABULAR_SIZES[name])
        else:
            kwargs = rtdl.FTTransformer.get_default_kwargs(**TABULAR_SIZES[name])  # _is_default included
            net = rtdl.FTTransformer(n_cont_features=n_features, cat_cardinalities=[], d_out=n_classes, **kwargs)
    return TabularNet(net, n_features, tokenized=name == "ft_transformer"), _HEADS[name]
