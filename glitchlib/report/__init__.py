"""Tables and figures of the book, from the results store's tidy tables.

The notebooks in ``notebooks/`` read the results store through the tidy loaders
of :mod:`glitchlib.store` (``load_runs``, ``load_metrics``, ``load_histories``,
``load_timings``, ``load_scores``) and turn those pandas tables into what a
reader sees with the functions below: mean ± std formatting over seeds, the
paper's numbers (SPEC.md section 6) as tables, side-by-side comparisons, and
seaborn figures. Every function is pure, a table in and a table or a
matplotlib figure out, except three that use the results store:
:func:`chapter` and :func:`ensure_results` (the grid's
:func:`glitchlib.grid.ensure_results`, here for the notebooks) compute the
missing runs into it, :func:`summary_tables` reads it.

Scores follow the library's rule: a higher score means more likely a glitch.

Every public name is available here, whichever module defines it
(``from glitchlib import report; report.metric_table(...)``); each module of
the package has one job:

:mod:`~glitchlib.report.chapter`
    what a chapter starts with: its runs, computed when missing, their status
    and provenance (:func:`chapter`);
:mod:`~glitchlib.report.names`
    display names of datasets, models, glitches and signals, and the order
    of their rows;
:mod:`~glitchlib.report.tables`
    mean ± std over seeds, the paper's numbers beside ours, detection, claim,
    repair, training accuracy and cost tables, and the summary tables of
    ``glitchlib report``;
:mod:`~glitchlib.report.plots`
    figures across runs;
:mod:`~glitchlib.report.detectors`
    the influence signals against the dedicated detectors of
    :mod:`glitchlib.peers`: detection, repair, cost and the paper's claims;
:mod:`~glitchlib.report.runs`
    the runs of a chapter: their settings, their status and provenance;
:mod:`~glitchlib.report.tabular`
    the paper's tabular claim beside ours, and peers' stored scores;
:mod:`~glitchlib.report.samples`
    one run's training samples: the most suspicious ones as images, label
    confusion and repairs;
:mod:`~glitchlib.report.studies`
    the paper's further experiments (SPEC.md section 9.1-9.5): glitch ratio,
    loss and accuracy per kind of sample, clean twins, dirty validation sets.
"""

from __future__ import annotations

from ..grid import ensure_results
from .chapter import Chapter, chapter
from .detectors import (
    PAPER_NEW_SIGNALS,
    claim_summary,
    detector_claims,
    detector_cost_table,
    detector_table,
    plot_detectors,
    repair_comparison,
    winner_summary,
)
from .names import (
    DATASET_NAMES,
    GLITCH_NAMES,
    INFLUENCE_SIGNALS,
    MODEL_NAMES,
    PEER_SIGNALS,
    SIGNAL_NAMES,
    SIGNAL_ORDER,
    pretty,
    HEAD_ON_NON_NEGATIVE_FEATURES,
    SAME_CLASS_SIGN_SIGNALS,
    UNINFORMATIVE_MARK,
    uninformative_signals,
)
from .plots import plot_histories, plot_metric, plot_stages, plot_validation
from .runs import (
    at_ratio,
    pick_run,
    run_caption,
    run_scores,
    select_keys,
    with_seed,
)
from .samples import (
    label_confusion,
    plot_confusion,
    plot_gallery,
    repair_summary,
    suspect_gallery,
    top_suspects,
)
from .tabular import EARLIER_SIGNALS, PAPER_TABULAR_CNCI_F1, influence_parameters, peer_f1, tabular_claim
from .studies import __all__ as _studies_names
from .studies import (
    PAPER_CNCI_GAIN_AT_1PCT,
    PAPER_KIND_LOSS_ACCURACY,
    PAPER_TWIN_DIFFERENCE,
    dirty_validation_table,
    kind_table,
    low_ratio_gain,
    plot_dirty_validation,
    plot_ratio_curves,
    plot_si_deciles,
    claim_table_by,
    si_decile_accuracy,
    signal_by_ratio,
    twin_difference_table,
    twin_pairs,
    validation_pairs,
    with_fields,
)
from .tables import (
    DETECTION_STAGES,
    PAPER_SIGNAL_SHARE,
    PAPER_TRAIN_ACCURACY,
    PAPER_VALIDATION,
    characterization_table,
    claim_table,
    compare_signals,
    cost_table,
    format_mean_std,
    mean_std_table,
    metric_table,
    repair_table,
    summary_tables,
    train_accuracy_table,
    training_notes,
    training_settings_table,
    validation_side_by_side,
)

__all__ = [
    "Chapter",
    "chapter",
    "EARLIER_SIGNALS",
    "PAPER_TABULAR_CNCI_F1",
    "influence_parameters",
    "peer_f1",
    "tabular_claim",
    "DATASET_NAMES",
    "MODEL_NAMES",
    "GLITCH_NAMES",
    "SIGNAL_NAMES",
    "SIGNAL_ORDER",
    "INFLUENCE_SIGNALS",
    "PEER_SIGNALS",
    "PAPER_NEW_SIGNALS",
    "SAME_CLASS_SIGN_SIGNALS",
    "HEAD_ON_NON_NEGATIVE_FEATURES",
    "UNINFORMATIVE_MARK",
    "uninformative_signals",
    "PAPER_VALIDATION",
    "PAPER_TRAIN_ACCURACY",
    "PAPER_SIGNAL_SHARE",
    "DETECTION_STAGES",
    "pretty",
    "format_mean_std",
    "mean_std_table",
    "training_settings_table",
    "training_notes",
    "validation_side_by_side",
    "select_keys",
    "with_seed",
    "ensure_results",
    "summary_tables",
    "plot_validation",
    "claim_table",
    "repair_summary",
    "metric_table",
    "plot_metric",
    "plot_confusion",
    "top_suspects",
    "plot_gallery",
    "suspect_gallery",
    "pick_run",
    "run_caption",
    "run_scores",
    "label_confusion",
    "cost_table",
    "train_accuracy_table",
    "repair_table",
    "characterization_table",
    "plot_stages",
    "compare_signals",
    "at_ratio",
    "plot_histories",
    "detector_table",
    "plot_detectors",
    "repair_comparison",
    "detector_cost_table",
    "detector_claims",
    "claim_summary",
    "winner_summary",
]
__all__ += _studies_names  # the further experiments' tables and figures (report.studies)
