"""The ``glitchlib`` command line: errors name the bad argument and the valid choices."""

from __future__ import annotations

import pytest

from glitchlib import cli
from glitchlib.profiles import profile_settings


def _fails(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv=argv)
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "--dataset", "svhn"], ["argument --dataset", "svhn", "mnist", "fmnist", "cifar10"]),
        (["run", "--glitch", "typo"], ["argument --glitch", "uniform", "class-based", "anomalies", "mixed"]),
        (["run", "--model", "lenet"], ["argument --model", "lenet", "resnet20", "efficientnet_lite0", "timm:<name>"]),
        (["run", "--influence", "some"], ["argument --influence", "all", "head"]),
        (["run", "--ratio", "0.7"], ["argument --ratio", "(0, 0.5]"]),
        (["run", "--ratio", "ten"], ["argument --ratio", "invalid float value"]),
        (["run", "--seed", "-1"], ["argument --seed", "non-negative"]),
        (["run", "--n-train", "1.5"], ["argument --n-train", "invalid int value"]),
        (["run", "--device", "gpu"], ["argument --device", "cpu", "cuda"]),
        (["run", "--glitch", "uniform", "--n-contaminated", "2"], ["argument --n-contaminated", "class-based"]),
        (["run", "--no-pretrained", "--weights", "w.pth"], ["argument --weights", "pretrained=False"]),
        (["grid", "--profile", "huge"], ["argument --profile", "huge", "embedded", "paper", "tiny", ".yaml"]),
        (["grid", "--profile", "absent.yaml"], ["argument --profile", "absent.yaml", "does not exist"]),
        (["grid", "-j", "0"], ["-j/--jobs", "positive"]),
        (["status", "--profile", "x"], ["argument --profile", "embedded"]),
        (["frobnicate"], ["invalid choice", "run", "grid", "status", "report"]),
        ([], ["required", "COMMAND"]),
    ],
)
def test_bad_arguments_name_the_argument_and_the_choices(capsys, argv, expected):
    err = _fails(capsys, argv)
    for text in expected:
        assert text in err, f"{text!r} missing from: {err}"


def test_bad_yaml_profile_names_the_file_and_the_field(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text("base: {n_train: 100}\nproduct:\n  dataset: [mnist]\n  sed: [0, 1]\n")
    err = _fails(capsys, ["status", "--profile", str(path), "--store", str(tmp_path / "r")])
    assert "argument --profile" in err and "grid.yaml" in err
    assert "sed" in err and "seed" in err  # the unknown field, and the valid ones


def test_run_refuses_a_cell_that_is_not_runnable_here(tmp_path, capsys):
    err = _fails(capsys, ["run", "--dataset", "cifar10", "--model", "resnet20",
                          "--data-root", str(tmp_path), "--store", str(tmp_path / "r")])
    assert "cannot run" in err and "CIFAR-10 files not found" in err and "data_root" in err
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in err  # where to get them


def test_status_lists_cells_and_why_they_cannot_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    assert cli.main(argv=["status", "--profile", "paper", "--store", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"{len(profile_settings('paper'))} cells" in out and "not runnable" in out  # images and tables
    assert "CIFAR-10 files not found" in out
    assert "resnet20 weights not found" in out and "cifar10_resnet20-4118986f.pt" in out
    assert "jannis is not downloaded" in out and "download=True" in out


def test_status_of_a_yaml_profile(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text("- {dataset: mnist, glitch: uniform, seed: 0}\n- {dataset: fmnist, glitch: anomalies, seed: 1}\n")
    assert cli.main(argv=["status", "--profile", str(path), "--store", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "2 cells" in out and "2 missing" in out


def test_report_on_an_empty_store(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    assert cli.main(argv=["report", "--store", str(tmp_path / "r")]) == 0
    assert "no finished runs" in capsys.readouterr().out


def test_summary_tables_never_average_runs_at_different_ratios(tmp_path):
    import pandas as pd

    from glitchlib.report import summary_tables
    from glitchlib.store import Store

    class FixedStore(Store):  # two seeds at 10 %, one run at 1 %
        def load_runs(self):
            return pd.DataFrame({"key": ["a", "b", "c"], "dataset": "mnist", "model": "efficientnet_lite0",
                                 "glitch": "class-based", "ratio": [0.1, 0.1, 0.01], "seed": [0, 1, 0],
                                 "pretrained": True, "influence": "all", "val_acc": [0.90, 0.92, 0.50]})

        def load_metrics(self):
            runs = self.load_runs()
            return runs.drop(columns="val_acc").assign(signal="cnci", f1=[0.8, 0.6, 0.1], ap=0.5, auroc=0.5)

    tables = summary_tables(store=FixedStore(root=tmp_path))
    assert set(tables) == {"validation accuracy", "detection F1, class-based noise at ratio 0.1",
                           "detection F1, class-based noise at ratio 0.01"}
    assert tables["detection F1, class-based noise at ratio 0.1"].iloc[0, 0] == "0.70 ± 0.14"
    assert tables["detection F1, class-based noise at ratio 0.01"].iloc[0, 0] == "0.10"
    accuracy = tables["validation accuracy"].iloc[:, 0].tolist()
    assert sorted(accuracy) == ["0.50", "0.91 ± 0.01"]


def test_every_settings_option_is_parsed_as_its_field_type():
    """--test-share 0.15 is a number, like every numeric field (read from the dataclass, not a list)."""
    import dataclasses

    from glitchlib.settings import ExperimentSettings

    samples = {"int": ("3", 3), "float": ("0.15", 0.15)}
    parser = cli._build_parser()
    checked = []
    for f in dataclasses.fields(ExperimentSettings):
        base = str(f.type).split("|")[0].strip()
        if base in samples:
            text, value = samples[base]
            args = parser.parse_args(["run", "--" + f.name.replace("_", "-"), text])
            assert getattr(args, f.name) == value and type(getattr(args, f.name)) is type(value), f.name
            checked.append(f.name)
    assert {"ratio", "test_ratio", "test_share", "subset", "lr", "seed", "n_train"} <= set(checked)


def test_test_share_and_test_ratio_reach_the_settings(capsys):
    # parsed as numbers, then refused by value when out of range, naming the option
    assert "argument --test-share" in _fails(capsys, ["run", "--test-share", "1.5"])
    assert "argument --test-ratio" in _fails(capsys, ["run", "--test-ratio", "0.9"])


def test_tabular_models_default_to_random_weights():
    from glitchlib.settings import ExperimentSettings, training_settings

    parser = cli._build_parser()
    args = parser.parse_args(["run", "--dataset", "wine", "--model", "mlp", "--glitch", "uniform"])
    assert args.pretrained is None
    assert ExperimentSettings(dataset="wine", model="mlp", glitch="uniform").pretrained is False
    assert ExperimentSettings(dataset="fmnist").pretrained is True
    # the default resolves before the key: equal to the explicit value, same stored entry
    assert ExperimentSettings(dataset="wine", model="mlp", glitch="uniform", pretrained=False).key() == \
        ExperimentSettings(dataset="wine", model="mlp", glitch="uniform").key()
    assert training_settings("wine", "mlp").source == "sweep"


@pytest.mark.parametrize("error, code, words", [
    (PermissionError(13, "Permission denied", "/store/runs/x/record.json"), 2, ["cannot write", "record.json",
                                                                                  "writable --store"]),
    (KeyboardInterrupt(), 130, ["interrupted", "again to resume"]),
])
def test_unwritable_store_and_interrupt_end_with_one_message(monkeypatch, capsys, error, code, words):
    def fail(args, parser):
        raise error

    monkeypatch.setattr(cli, "_status", fail)
    with pytest.raises(SystemExit) as info:
        cli.main(["status", "--profile", "tiny"])
    assert info.value.code == code
    err = capsys.readouterr().err
    assert all(w in err for w in words) and "Traceback" not in err


def test_report_on_a_missing_store_names_it(tmp_path, capsys):
    err = _fails(capsys, ["report", "--store", str(tmp_path / "typo")])
    assert "argument --store" in err and "typo" in err


def test_summary_tables_never_average_different_experiments(tmp_path, monkeypatch):
    """Seeds of the same settings are averaged; runs of other sizes or validation noise are not."""
    import pandas as pd

    from glitchlib import store as store_module
    from glitchlib.report import summary_tables

    def settings(key, **extra):
        base = {"n_train": None, "n_test": None, "subset": 0.1, "n_contaminated": None, "corruption": None,
                "test_ratio": 0.0, "test_share": None, "lr": None, "batch_size": None, "epochs": None,
                "influence": "all", "counterfactual": "all", "projection_dim": None}
        return {"key": key, "settings": {**base, **extra}}

    runs = pd.DataFrame({"key": ["a0", "a1", "b0"], "dataset": "mnist", "model": "efficientnet_lite0",
                         "glitch": "class-based", "ratio": 0.1, "seed": [0, 1, 0], "pretrained": True,
                         "influence": "all", "val_acc": [0.9, 0.8, 0.1]})
    metrics = pd.DataFrame({"key": ["a0", "a1", "b0"], "dataset": "mnist", "model": "efficientnet_lite0",
                            "glitch": "class-based", "ratio": 0.1, "seed": [0, 1, 0], "pretrained": True,
                            "influence": "all", "signal": "cnci", "f1": [0.8, 0.6, 0.0], "ap": 0.5, "auroc": 0.5})
    records = [settings("a0"), settings("a1"), settings("b0", n_train=300, test_ratio=0.2)]
    monkeypatch.setattr(store_module.Store, "load_runs", lambda self: runs)
    monkeypatch.setattr(store_module.Store, "load_metrics", lambda self: metrics)
    monkeypatch.setattr(store_module.Store, "records", lambda self: records)
    tables = summary_tables(store=tmp_path)
    main = tables["detection F1, class-based noise at ratio 0.1"]
    other = tables["detection F1, class-based noise at ratio 0.1, n_train=300, test_ratio=0.2"]
    assert main.iloc[0, 0].startswith("0.70") and other.iloc[0, 0].startswith("0.00")
