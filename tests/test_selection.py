"""Model selection you can set (``reclens train --valid-metric/--patience/...``) and named
configurations (``--config``), recorded in the saved run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from engine import pipeline, presets, registry
from engine.run_config import RunConfig
from engine.runs import load_run

SMALL = ["--dataset", "synthetic", "--data-option", "n_users=120", "--data-option",
         "n_items=80", "--data-option", "n_interactions=2000", "--device", "cpu"]  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    pipeline.clear_cache()


@pytest.mark.parametrize("name", presets.preset_names())
def test_every_preset_is_valid_for_its_model(name: str) -> None:
    preset = presets.get_preset(name)
    config = registry.train_config(preset.model, **preset.train)
    model = registry.create(preset.model, 30, **preset.hparams)
    assert {k: model.hparams[k] for k in preset.hparams} == {
        k: tuple(v) if isinstance(v, list) else v for k, v in preset.hparams.items()
    }
    assert config.valid_metric == preset.train["valid_metric"] and preset.source


def test_diffrec_paper_preset_holds_the_released_setting() -> None:
    preset = presets.get_preset("diffrec-paper-ml1m")
    assert preset.hparams["steps"] == 40 and preset.hparams["noise_schedule"] == "linear-var"
    assert (preset.hparams["noise_scale"], preset.hparams["noise_min"]) == (5e-3, 5e-3)
    assert preset.hparams["noise_max"] == 1e-2
    config = registry.train_config("diffrec", **preset.train)
    assert (config.lr, config.weight_decay, config.batch_size) == (1e-3, 0.0, 400)
    assert config.valid_metric == "recall@20" and config.eval_every * config.patience == 20


def test_selection_flags_reach_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", *SMALL, "--model", "fism", "--epochs", "4", "--valid-metric",
                 "recall@20", "--patience", "1", "--eval-every", "2", "--min-epochs", "0",
                 "--out", str(tmp_path), "--json"])  # fmt: skip
    row = json.loads(capsys.readouterr().out.strip())
    assert code == 0
    run = load_run(row["run_dir"])
    train = run.config.train
    assert (train["valid_metric"], train["patience"], train["eval_every"]) == ("recall@20", 1, 2)
    assert run.metrics["valid_metric"] == "recall@20" and run.metrics["min_epochs"] == 0
    curve = [h["valid"] for h in run.metrics["history"]]
    assert curve[0] is None and curve[1] is not None  # evaluated every second epoch
    kept = run.metrics["history"][run.metrics["best_epoch"] - 1]
    assert (
        kept["valid"]
        == pytest.approx(run.metrics["best_valid"])
        == max(v for v in curve if v is not None)
    )
    assert run.config.preset == ""


def test_a_named_configuration_is_applied_and_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", *SMALL, "--model", "multvae", "--config", "multvae-paper-ml1m",
                 "--epochs", "2", "--out", str(tmp_path), "--json"])  # fmt: skip
    row = json.loads(capsys.readouterr().out.strip())
    assert code == 0
    run = load_run(row["run_dir"])
    assert run.config.preset == "multvae-paper-ml1m"
    assert run.config.hparams["anneal_cap"] == 0.2 and run.config.train["batch_size"] == 500
    assert run.config.train["epochs"] == 2  # explicit flags override the configuration
    assert run.metrics["valid_metric"] == "recall@20"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "fism", "--config", "diffrec-paper-ml1m"], "is for model diffrec"),
        (["--model", "diffrec", "--config", "diffrec-paper"], "did you mean diffrec-paper-ml1m"),
        (["--model", "fism", "--valid-metric", "auc@10"], "unknown validation metric"),
        (["--model", "fism", "--patience", "-1"], "patience >= 0"),
    ],
)
def test_selection_mistakes_are_one_line_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", *SMALL, "--no-save", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and message in err
    assert len(err.strip().splitlines()) == 1


def test_configs_written_before_presets_still_load() -> None:
    old = {"model": "mf", "hparams": {}, "dataset": {"name": "d"}, "split": {"protocol": "random"}}
    assert RunConfig.from_json(old).preset == ""
    assert RunConfig.from_json({**old, "preset": "diffrec-paper-ml1m"}).preset
