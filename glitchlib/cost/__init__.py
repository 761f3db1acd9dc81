"""What detection costs (SPEC.md section 9.9): T1 to T4, and how influence grows with n, m and d.

``measure`` holds the timers and memory meters, ``training`` the paper's
decomposition T1 to T4 (training both ways), ``scaling`` the influence sweeps,
``stored`` keeps benchmark results in the results store.
"""

from .measure import timed
from .scaling import BOOK_SCALING, ScalingSettings, growth_summary, plot_scaling, run_scaling
from .stored import stored_benchmark
from .training import PAPER_SHARE, TrainingCostSettings, cost_cells, measure_training_cost, t1_to_t4_table

__all__ = [
    "BOOK_SCALING",
    "PAPER_SHARE",
    "ScalingSettings",
    "TrainingCostSettings",
    "cost_cells",
    "growth_summary",
    "measure_training_cost",
    "plot_scaling",
    "run_scaling",
    "stored_benchmark",
    "t1_to_t4_table",
    "timed",
]
