"""Tests of glitchlib.report.detectors: influence signals against the dedicated detectors."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from glitchlib import peers, report

F1 = {"uniform": {"si": [0.5, 0.6], "nil_opt": [0.8, 1.0], "cnci": [0.8, 0.8], "cleanlab": [0.6, 0.7],
                  "knn": [0.1, 0.2]},
      "class-based": {"si": [0.3, 0.3], "nil_opt": [0.2, 0.2], "cnci": [0.4, 0.5], "cleanlab": [0.6, 0.6],
                      "knn": [0.1, 0.1]}}


def _metrics():
    rows = [{"key": f"{glitch}{seed}", "dataset": "mnist", "model": "efficientnet_lite0", "glitch": glitch,
             "pretrained": True, "seed": seed, "signal": signal, "f1": values[seed], "ap": values[seed],
             "auroc": 0.5}
            for glitch, signals in F1.items() for signal, values in signals.items() for seed in (0, 1)]
    return pd.DataFrame(rows)


def _runs():
    rows = []
    for glitch, (cnci, cleanlab) in {"uniform": ([0.9, 0.7], [0.8, 0.8]), "class-based": ([0.2, 0.3], [0.5, 0.1]),
                                     "anomalies": ([np.nan] * 2, [np.nan] * 2)}.items():
        for seed in (0, 1):
            rows.append({"key": f"{glitch}{seed}", "dataset": "mnist", "model": "efficientnet_lite0",
                         "glitch": glitch, "pretrained": True, "seed": seed, "repair_acc": cnci[seed],
                         "repair_acc_cleanlab": cleanlab[seed],
                         **{f"seconds_{p}": 0.5 + seed for p in peers.PEERS}})
    return pd.DataFrame(rows)


def test_peer_names_follow_the_library():
    assert report.PEER_SIGNALS == peers.PEERS
    assert set(report.INFLUENCE_SIGNALS) | set(report.PEER_SIGNALS) == set(report.SIGNAL_ORDER)


def test_detector_table_picks_the_best_influence_signal_per_glitch():
    table = report.detector_table(_metrics())
    uniform = table.loc[("MNIST", "EfficientNet-Lite0", "uniform noise")]
    assert uniform["best influence signal"] == "NIL-opt"  # mean 0.9 beats CNCI's 0.8
    assert uniform["its f1"] == report.format_mean_std(0.9, std=np.std([0.8, 1.0], ddof=1))
    assert uniform["cleanlab"] == report.format_mean_std(0.65, std=np.std([0.6, 0.7], ddof=1))
    assert uniform["k-NN"] == report.format_mean_std(0.15, std=np.std([0.1, 0.2], ddof=1))
    class_based = table.loc[("MNIST", "EfficientNet-Lite0", "class-based noise")]
    assert class_based["best influence signal"] == "CNCI" and class_based["its f1"] == report.format_mean_std(
        0.45, std=np.std([0.4, 0.5], ddof=1))
    assert list(table.columns) == ["best influence signal", "its f1", "CNCI", "cleanlab", "k-NN"]
    assert report.detector_table(_metrics().iloc[:0]).empty


def test_claims_are_checked_per_glitch_and_can_fail():
    claims = report.detector_claims(_metrics(), _runs())
    detect = claims.xs("CNCI detects better (F1)", level="claim")
    assert detect.loc[("MNIST", "EfficientNet-Lite0", "uniform noise"), "verdict"] == "holds"
    row = detect.loc[("MNIST", "EfficientNet-Lite0", "class-based noise")]
    assert row["verdict"] == "fails" and row["difference"] == pytest.approx(-0.15)
    assert row["seeds CNCI better"] == "0/2"
    repair = claims.xs("CNCI repairs better (repair accuracy)", level="claim")
    assert repair.loc[("MNIST", "EfficientNet-Lite0", "uniform noise"), "verdict"] == "fails"  # 0.8 vs 0.8
    assert repair.loc[("MNIST", "EfficientNet-Lite0", "class-based noise"), "seeds CNCI better"] == "1/2"
    assert len(repair) == 2  # anomalies have no mislabeled sample
    text = report.claim_summary(claims)
    assert "**CNCI detects better (F1)**: holds in 1 of 2" in text
    assert "fails for MNIST · EfficientNet-Lite0 · class-based noise" in text


def test_repair_comparison_and_cost():
    table = report.repair_comparison(_runs())
    row = table.loc[("MNIST", "EfficientNet-Lite0", "class-based noise")]
    assert row["seeds CNCI at least as good"] == "1/2" and row["difference"] == pytest.approx(-0.05)
    timings = pd.DataFrame([{"key": k, "dataset": "mnist", "model": "efficientnet_lite0", "pretrained": True,
                             "stage": stage, "seconds": seconds}
                            for k in _runs()["key"] for stage, seconds in
                            (("training", 3.0), ("influence", 2.0), ("counterfactuals", 1.0), ("signals", 8.0))])
    cost = report.detector_cost_table(_runs(), timings)
    column = "MNIST · EfficientNet-Lite0 (6 runs)"  # the count in the header, not in a row of seconds
    # 2 + 1 + 8 s of stages minus six detectors at 0.5 s (seed 0) and 1.5 s (seed 1): 11 - 3 and 11 - 9
    assert cost.loc["influence signals", column] == pytest.approx(np.mean([8.0, 2.0]))
    assert cost.loc["cleanlab", column] == pytest.approx(1.0) and "runs" not in cost.index


def test_plot_detectors_draws_one_panel_per_glitch():
    fig = report.plot_detectors(_metrics())
    assert len(fig.axes) == 2
    assert report.plot_detectors(_metrics().iloc[:0]) is not None


def test_winner_summary_names_the_best_score_and_the_gap_of_the_influence_signals():
    text = report.winner_summary(_metrics())
    lines = text.splitlines()
    assert lines[0] == "- MNIST · EfficientNet-Lite0 · uniform noise: best NIL-opt (0.90)."
    assert lines[1] == ("- MNIST · EfficientNet-Lite0 · class-based noise: best cleanlab (0.60); "
                        "best influence signal CNCI (0.45, -0.15).")


def test_detector_views_skip_groups_without_numbers():
    # the clean twins (glitch "none") record NaN metrics: no best signal there, and no crash
    nan = _metrics().assign(glitch="none", f1=float("nan"))
    both = pd.concat([_metrics(), nan], ignore_index=True)
    fig = report.plot_detectors(both)
    assert len(fig.axes) == 2
    assert not report.detector_table(both).empty
