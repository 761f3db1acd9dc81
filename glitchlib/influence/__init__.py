"""TracIn influence: exact, chunked, CPU or GPU (SPEC.md section 3).

``TracIn`` is the engine; the modules behind it each have one job:
``layers`` (which parameters), ``gradients`` (per-sample gradients, factored for
``Linear`` layers), ``projection`` (identity by default, seeded Gaussian option),
``kernels`` (the dot-product phase).

``InfluenceFunction`` is Koh and Liang's estimate with the exact Hessian, for
small models (SPEC.md section 9.8), with TracIn's sign convention.
"""

from .gradients import Factors, per_sample_loss
from .influence_function import MAX_PARAMETERS, InfluenceFunction
from .layers import INFLUENCE_MODULE_TYPES, influence_module_names, resolve_layers
from .projection import GaussianProjector, IdentityProjector
from .tracin import TracIn

__all__ = [
    "INFLUENCE_MODULE_TYPES",
    "Factors",
    "GaussianProjector",
    "IdentityProjector",
    "InfluenceFunction",
    "MAX_PARAMETERS",
    "TracIn",
    "influence_module_names",
    "per_sample_loss",
    "resolve_layers",
]
