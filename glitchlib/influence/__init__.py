"""TracIn influence: exact, chunked, CPU or GPU (SPEC.md section 3).

``TracIn`` is the engine; the modules behind it each have one job:
``layers`` (which parameters), ``gradients`` (per-sample gradients, factored for
``Linear`` layers), ``projection`` (identity by default, seeded Gaussian option),
``kernels`` (the dot-product phase).

``InfluenceFunction`` is Koh and Liang's estimate with the exact Hessian, for
small models (SPEC.md section 9.8), with TracIn's sign convention.
"""

from ._influence_function import InfluenceFunction
from ._layers import influence_module_names
from ._tracin import TracIn

__all__ = ["InfluenceFunction", "TracIn", "influence_module_names"]
