"""Cost measurements (SPEC.md section 9.9): meters, T1 to T4, stored results, scaling points.

Times are never asserted; the oracles are hand-computed values (the breakdown's
arithmetic, parameter counts, matrix sizes), a known allocation (memory meter),
exact power laws (growth exponents) and ``glitchlib.profiles.runnable`` itself.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from glitchlib import cost
from glitchlib.cost import measure, scaling, stored, training
from glitchlib.profiles import profile_settings, runnable


def test_peak_memory_sees_a_known_allocation():
    with measure.PeakMemory(device="cpu", interval=0.001) as meter:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, written, so resident
        time.sleep(0.05)  # let the sampler see it
        del block
    if meter.peak_bytes is None:
        pytest.skip("no /proc on this platform")
    assert 48 * 2**20 <= meter.peak_bytes <= 512 * 2**20


def test_matmul_seconds_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shapes is empty"):
        measure.matmul_seconds([])
    with pytest.raises(ValueError, match="4 positive ints"):
        measure.matmul_seconds([(4, 0, 4, 1)])
    assert measure.matmul_seconds([(8, 20, 6, 2)], max_inner=7, repeats=1) > 0


def test_cost_breakdown_by_hand():
    stages = {"training": 2.0, "influence": 3.0, "counterfactuals": 1.0, "signals": 0.5}
    measured = {"backbone_per_image": 0.01, "epoch_per_image": 0.012}
    b = training.cost_breakdown(stages, measured, n_train=100, n_test=20, epochs=5)
    assert b["T1 paper"] == pytest.approx(5 * 100 * 0.012)  # 6.0
    assert b["T1 ours"] == pytest.approx(120 * 0.01 + 2.0)  # 3.2
    assert (b["T2"], b["T3"], b["T4"]) == (3.0, 1.0, 0.5)
    assert b["share paper"] == pytest.approx(4.5 / 6.0)
    assert b["share ours"] == pytest.approx(4.5 / 3.2)
    with pytest.raises(ValueError, match="signals"):
        training.cost_breakdown({k: v for k, v in stages.items() if k != "signals"}, measured,
                            n_train=100, n_test=20, epochs=5)
    with pytest.raises(ValueError, match="positive"):
        training.cost_breakdown(stages, measured, n_train=0, n_test=20, epochs=5)


def test_t1_to_t4_table_reads_the_stage_means():
    from glitchlib.settings import ExperimentSettings

    cell = ExperimentSettings(dataset="mnist", model="efficientnet_lite0", glitch="class-based", seed=0)
    timings = pd.DataFrame([
        {"key": k, "dataset": "mnist", "model": "efficientnet_lite0", "glitch": "class-based", "stage": s,
         "seconds": v * (1 + i)}
        for i, k in enumerate(["a", "b"])
        for s, v in {"training": 1.0, "influence": 2.0, "counterfactuals": 1.0, "signals": 0.5}.items()
    ])
    runs = pd.DataFrame({"key": ["a", "b"], "n_train": [100, 100], "n_test": [20, 20]})
    measured = {"efficientnet_lite0": {"backbone_per_image": 0.01, "epoch_per_image": 0.02}}
    table = cost.t1_to_t4_table(timings, runs, measured, cells=[cell])
    column = table["mnist · efficientnet_lite0"]
    epochs = 10  # efficientnet_lite0's training settings (glitchlib.settings)
    assert column["T2 influence matrix"] == "3.00 s"  # mean of 2 and 4
    assert column["T1 training, the paper's way (backbone every epoch)"] == f"{epochs * 100 * 0.02:.2f} s"
    assert column["T1 training, ours (features once)"] == f"{120 * 0.01 + 1.5:.2f} s"
    assert column["(T2+T3+T4) / T1, the paper's way"] == f"{(3 + 1.5 + 0.75) / (epochs * 2):.2%}"
    assert table.loc["(T2+T3+T4) / T1, the paper's way", "the paper"] == "about 8%"


def test_cost_cells_follow_runnable():
    cells, skipped = cost.cost_cells(profile_settings("embedded"))
    assert [(c.dataset, c.model, c.glitch, c.seed) for c in cells] == [("mnist", "efficientnet_lite0", "class-based", 0)]
    assert skipped == {}
    cells, skipped = cost.cost_cells(profile_settings("paper"))
    for model in ("resnet20", "vit_b_16", "convnext_tiny"):
        cell = next(s for s in profile_settings("paper") if s.model == model and s.dataset == "mnist"
                    and s.glitch == "class-based")
        ok, reason = runnable(cell)
        assert (model in [c.model for c in cells]) == ok
        assert skipped.get(model, "") == reason
    fmnist_only = [s for s in profile_settings("tiny") if s.dataset == "fmnist"]
    assert {c.dataset for c in cost.cost_cells(fmnist_only)[0]} == {"fmnist"}
    with pytest.raises(ValueError, match="empty"):
        cost.cost_cells([])


def test_stored_benchmark_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    first = cost.stored_benchmark(tmp_path, "demo", settings={"a": 1}, compute=compute)
    again = cost.stored_benchmark(tmp_path, "demo", settings={"a": 1}, compute=compute)
    assert first["result"] == again["result"] == {"value": 1} and len(calls) == 1
    assert again["settings"] == {"a": 1} and "torch_threads" in again["environment"]
    assert len(again["load_average"]) == 2
    assert cost.stored_benchmark(tmp_path, "demo", settings={"a": 1}, compute=compute, recompute=True)["result"] == {"value": 2}
    assert stored._benchmark_path(tmp_path, "demo", {"a": 2}) != stored._benchmark_path(tmp_path, "demo", {"a": 1})
    with pytest.raises(FileNotFoundError, match="compute_missing=True"):
        cost.stored_benchmark(tmp_path, "demo", settings={"a": 2}, compute=compute, compute_missing=False)
    with pytest.raises(ValueError, match="name"):
        stored._benchmark_path(tmp_path, "../x", {})


def test_measure_point_sizes_and_parameter_counts():
    settings = cost.ScalingSettings(features=16, checkpoints=2, repeats=1)
    head = scaling._measure_point("linear head", 30, 7, settings)
    assert head["d"] == 17 * 10 and head["matrix_mib"] == pytest.approx(30 * 7 * 4 / 2**20)
    assert head["seconds"] > 0 and head["mm_share"] == pytest.approx(head["mm_seconds"] / head["seconds"])
    resnet = scaling._measure_point("resnet20", 6, 3, settings)
    assert resnet["d"] == 2 * 64 * 64 * 3 * 3 + 64 * 10 + 10  # layer3.2's two convolutions and fc
    projected = scaling._measure_point("resnet20", 6, 3, settings, k=32)
    assert projected["d"] == 32 and projected["case"] == "resnet20 projected"
    with pytest.raises(ValueError, match="only the resnet20 case"):
        scaling._measure_point("linear head", 6, 3, settings, k=32)
    with pytest.raises(ValueError, match="case="):
        scaling._measure_point("vit", 6, 3, settings)


def test_growth_exponent_of_exact_power_laws():
    sizes = np.array([1_000, 2_000, 4_000, 8_000])
    table = pd.DataFrame({"sweep": "n", "n": sizes, "m": 100, "seconds": 3e-4 * sizes,
                          "beyond_matrix_mib": 50.0})
    table = pd.concat([table, pd.DataFrame({"sweep": "m", "n": 100, "m": sizes, "seconds": 1e-8 * sizes**2,
                                            "beyond_matrix_mib": 50.0})])
    assert scaling._growth_exponent(table, "n") == pytest.approx(1.0)
    assert scaling._growth_exponent(table, "m") == pytest.approx(2.0)
    assert scaling._growth_exponent(table, "n", "beyond_matrix_mib") == pytest.approx(0.0, abs=1e-9)
    assert "n^1.00" in cost.growth_summary(table) and "m^2.00" in cost.growth_summary(table)
    with pytest.raises(ValueError, match="sweep="):
        scaling._growth_exponent(table, "d")


def test_scaling_settings_reject_empty_sweeps():
    with pytest.raises(ValueError, match="n_values"):
        cost.ScalingSettings(n_values=())
    with pytest.raises(ValueError, match="repeats"):
        cost.ScalingSettings(repeats=0)
    assert cost.BOOK_SCALING.to_dict()["n_values"] == list(cost.BOOK_SCALING.n_values)


def test_measure_training_cost_on_a_few_images():
    spec = cost.TrainingCostSettings(sample=4, device="cpu")
    result = cost.measure_training_cost(spec)
    assert (result["n_train"], result["n_test"], result["sample"]) == (6000, 1000, 4)
    assert result["backbone_per_image"] == pytest.approx(result["backbone_seconds"] / 4)
    assert result["epoch_per_image"] == pytest.approx(result["epoch_seconds"] / 4)
    with pytest.raises(ValueError, match="sample"):
        cost.TrainingCostSettings(sample=0)


def test_the_cost_measurements_refuse_a_device_this_machine_lacks_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(training, "timed", lambda *a, **k: pytest.fail("measured with a bad device"))
    monkeypatch.setattr(scaling, "_measure_point", lambda *a, **k: pytest.fail("measured with a bad device"))
    cuda = "^device='cuda': CUDA is not available on this machine; use device='cpu'"
    with pytest.raises(ValueError, match=cuda):
        cost.measure_training_cost(cost.TrainingCostSettings(sample=4, device="cuda", data_root=str(tmp_path)))
    with pytest.raises(ValueError, match=cuda):
        cost.run_scaling(cost.ScalingSettings(device="cuda"), progress=False)
    with pytest.raises(ValueError, match="^device='gpu'"):
        cost.stored_benchmark(tmp_path, "demo", settings={"a": 1}, device="gpu",
                              compute=lambda: pytest.fail("computed with a bad device"))
    # a stored result is read back whatever the device
    cost.stored_benchmark(tmp_path, "demo", settings={"a": 1}, compute=lambda: {"value": 1})
    assert cost.stored_benchmark(tmp_path, "demo", settings={"a": 1}, device="cuda",
                                 compute=lambda: pytest.fail("recomputed"))["result"] == {"value": 1}
