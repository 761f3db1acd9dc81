"""TracIn influence: exact, chunked, CPU or GPU (SPEC.md section 3).

``TracIn`` is the engine; the modules behind it each have one job:
``layers`` (which parameters), ``gradients`` (per-sample gradients, factored for
``Linear`` layers), ``projection`` (identity by default, seeded Gaussian option),
``kernels`` (the dot-product phase).
"""

from .gradients import Factors, per_sample_loss
from .layers import INFLUENCE_MODULE_TYPES, influence_module_names, resolve_layers
from .projection import GaussianProjector, IdentityProjector
from .tracin import TracIn

__all__ = [
    "INFLUENCE_MODULE_TYPES",
    "Factors",
    "GaussianProjector",
    "IdentityProjector",
    "TracIn",
    "influence_module_names",
    "per_sample_loss",
    "resolve_layers",
]
