"""Overview tab: the leaderboard per dataset, stable model colours, the validation curve."""

from __future__ import annotations

from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import pytest

from app.dashboard.catalogue import ValidationCurve
from app.dashboard.engine_service import EngineService
from app.dashboard.plots import PALETTE
from app.dashboard.plots import overview as ov
from app.dashboard.state import Selection
from app.dashboard.views.overview import OverviewView, board_groups, board_titles

BOARD = pd.DataFrame(
    {
        "run": ["ml/diffrec-1", "ml/ease-1", "big/diffrec-2"],
        "dataset": ["ml", "ml", "big"],
        "model": ["diffrec", "ease", "diffrec"],
        "created": ["2026-01-03", "2026-01-02", "2026-01-01"],
        "kept epoch": ["12 of 20", "closed form", "40 of 60"],
        "ndcg@10": [0.34, 0.30, 0.18],
        "recall@10": [0.25, 0.22, 0.10],
        "train fit": [12.0, 0.5, 300.0],
        "train total": [13.0, 0.9, 310.0],
    }
)


# -- plots -------------------------------------------------------------------------------------
def test_model_colour_is_fixed_per_model_whatever_the_runs() -> None:
    known = [ov.model_colour(m) for m in ov.MODEL_ORDER[:10]]
    assert len(set(known)) == 10  # the first ten models never share a colour
    assert (
        ov.model_colour("ease") == ov.model_colour("ease") == PALETTE[ov.MODEL_ORDER.index("ease")]
    )
    assert ov.model_colour("some-new-model") in PALETTE
    alone = ov.tradeoff_scatter(BOARD.iloc[[1]], "ndcg@10", "recall@10")
    together = ov.tradeoff_scatter(BOARD, "ndcg@10", "recall@10")
    assert alone.Points.I.opts["cmap"]["ease"] == together.Points.I.opts["cmap"]["ease"]
    assert together.Points.I.opts["cmap"]["diffrec"] == ov.model_colour("diffrec")


def _labels(overlay: hv.Overlay) -> list[str]:
    return [t for e in overlay if isinstance(e, hv.Labels) for t in e.data["label"]]


def test_scatter_labels_name_the_dataset_only_when_several_are_shown() -> None:
    mixed = ov.tradeoff_scatter(BOARD, "ndcg@10", "recall@10", x_label="NDCG@10")
    assert sorted(_labels(mixed)) == ["diffrec \u00b7 big", "diffrec \u00b7 ml", "ease \u00b7 ml"]
    one = ov.tradeoff_scatter(BOARD[BOARD["dataset"] == "ml"], "ndcg@10", "recall@10")
    assert sorted(_labels(one)) == ["diffrec", "ease"]
    assert mixed.opts["padding"] == (0.2, 0.25)  # room for the labels inside the frame
    assert mixed.opts["title"] == "recall@10 against NDCG@10"
    assert mixed.Points.I.kdims[0].label == "NDCG@10"


def test_labels_of_nearby_points_take_different_places() -> None:
    x = np.array([0.30, 0.301, 0.10, 0.302, 0.299])
    y = np.array([0.25, 0.251, 0.25, 0.90, 0.249])
    slots = ov.label_slots(x, y)
    # from the top down: 3 and 1 above, 0 below 1, 2 far to the left above, 4 (on the right
    # of the plot) left of 0
    assert list(slots) == [1, 0, 0, 0, 3]
    assert not ov.label_slots(np.array([0.1, 0.9]), np.array([0.1, 0.9])).any()
    assert ov.label_slots(np.array([]), np.array([])).shape == (0,)
    same = BOARD.assign(**{"ndcg@10": 0.3, "recall@10": 0.2})  # three runs in one place
    overlay = ov.tradeoff_scatter(same, "ndcg@10", "recall@10")
    places = [
        (e.opts["text_align"], e.opts["text_baseline"])
        for e in overlay
        if isinstance(e, hv.Labels) and len(e)
    ]
    assert places == [("center", "bottom"), ("center", "top"), ("left", "middle")]
    colours = {e.opts["text_color"] for e in overlay if isinstance(e, hv.Labels)}
    assert colours == {"#333333"}  # one label colour, not the overlay's colour cycle


def test_validation_curve_marks_the_kept_epoch() -> None:
    overlay = ov.validation_curve([2, 4, 6, 8], [0.10, 0.14, 0.13, 0.12], 4, "NDCG@10")
    curve = overlay.Curve.I
    assert list(curve.data["epoch"]) == [2, 4, 6, 8]
    assert list(curve.data["valid"]) == [0.10, 0.14, 0.13, 0.12]
    assert curve.vdims[0].label == "NDCG@10"
    (star,) = [e for e in overlay if isinstance(e, hv.Scatter) and e.label]
    assert star.label == "kept: epoch 4"
    assert list(star.data["epoch"]) == [4] and list(star.data["valid"]) == [0.14]
    assert star.opts["marker"] == "star"
    assert overlay.VLine.I.data == 4.0
    hv.render(overlay)  # draws with Bokeh


def test_validation_curve_without_the_kept_epoch_draws_no_mark() -> None:
    overlay = ov.validation_curve([1, 2], [0.2, 0.3], 0)
    assert not any(isinstance(e, hv.VLine) for e in overlay)
    assert [e.label for e in overlay if isinstance(e, hv.Scatter)] == [""]  # dots, no star
    empty = ov.validation_curve([], [], 0)
    assert len(empty.Curve.I.data) == 0
    hv.render(empty)


# -- the run record ----------------------------------------------------------------------------
def test_validation_curve_is_read_from_the_run_record() -> None:
    record = {
        "valid_metric": "recall@20",
        "best_epoch": 4,
        "epochs_run": 6,
        "stopped_early": True,
        "history": [
            {"epoch": e, "loss": 1.0, "valid": v, "seconds": 1.0, "epochs": 30, "best": False}
            for e, v in [(1, None), (2, 0.1), (3, None), (4, 0.3), (5, None), (6, 0.2)]
        ],
    }
    curve = ValidationCurve.from_record(record)
    assert (curve.epochs, curve.values) == ((2, 4, 6), (0.1, 0.3, 0.2))
    assert (curve.metric, curve.kept, curve.planned, curve.stopped_early) == (
        "recall@20",
        "4 of 6",
        30,
        True,
    )
    closed = ValidationCurve.from_record(
        {"best_epoch": 0, "epochs_run": 0, "history": [{"epoch": 0, "loss": None, "valid": 0.3}]}
    )
    assert closed.kept == "closed form" and closed.values == (0.3,)
    old = ValidationCurve.from_record({"history": "not a list", "best_epoch": "x"})
    assert (old.epochs, old.kept_epoch, old.metric) == ((), 0, "ndcg@10")


# -- the leaderboard ---------------------------------------------------------------------------
class _Catalogue:
    def versus(self, run: str) -> dict[str, str]:
        return {}

    def broken(self) -> list[tuple[str, str]]:
        return []


class _Service(EngineService):
    """An engine service over an empty runs folder that answers the Overview tab's questions
    with a fixed leaderboard of two datasets."""

    def __init__(self, root: Path, board: pd.DataFrame) -> None:
        super().__init__(root)
        self.board = board
        self.catalogue = _Catalogue()  # type: ignore[assignment]

    def leaderboard(self) -> pd.DataFrame:
        return self.board.copy()

    def beyond_means(self, run_id: str) -> dict[str, float | None]:
        return {"arp": 0.5, "coverage": 0.1}

    def models(self) -> list[str]:
        return ["ease"]


@pytest.fixture()
def overview(tmp_path: Path) -> OverviewView:
    state = Selection(run="ml/ease-1", dataset="ml")
    return OverviewView(state=state, service=_Service(tmp_path, BOARD))


def test_leaderboard_shows_the_selected_dataset_or_every_one(overview: OverviewView) -> None:
    assert list(overview.board()["run"]) == ["ml/diffrec-1", "ml/ease-1"]
    assert list(overview._table.value["run"]) == ["ml/diffrec-1", "ml/ease-1"]
    overview.scope = "all"
    assert list(overview._table.value["run"]) == list(BOARD["run"])
    overview.scope = "dataset"
    overview.state.param.update(run="big/diffrec-2", dataset="big")
    assert list(overview._table.value["run"]) == ["big/diffrec-2"]
    scatter = overview.tradeoff().object
    assert list(scatter.Points.I.data["run"]) == ["big/diffrec-2"]


def test_leaderboard_columns_in_words_with_timing_apart(overview: OverviewView) -> None:
    board = overview.board()
    columns = list(board.columns)
    timing = [c for c in columns if c.startswith("train ")]
    assert timing == ["train fit", "train total"]
    assert columns[-len(timing) :] == timing  # after every metric
    assert columns.index("kept epoch") < columns.index("ndcg@10")
    titles = board_titles(board)
    assert titles["ndcg@10"] == "NDCG@10"
    assert titles["arp"] == "Average recommendation popularity"
    assert titles["train fit"] == "fit"
    groups = board_groups(board)
    assert groups["Training time (seconds)"] == timing
    assert groups["Test accuracy"] == ["ndcg@10", "recall@10"]
    assert groups["Beyond accuracy (top-10 lists)"] == ["arp", "coverage"]
    assert overview._table.titles["recall@10"] == "Recall@10"
    assert board.set_index("run").loc["ml/ease-1", "kept epoch"] == "closed form"


@pytest.mark.slow
def test_a_saved_run_shows_its_kept_epoch_and_curve(tmp_path: Path) -> None:
    from app.dashboard.catalogue import RunCatalogue
    from engine.pipeline import train_run

    data = {"n_users": 60, "n_items": 40, "n_interactions": 800}
    trained = train_run(
        "synthetic",
        "fism",
        device="cpu",
        epochs=4,
        out=tmp_path,
        load_options=data,
        train_options={"eval_every": 2, "valid_metric": "recall@10"},
    )
    catalogue = RunCatalogue(tmp_path)
    (run,) = catalogue.run_ids()
    curve = catalogue.validation_curve(run)
    evaluated = [(r.epoch, r.valid) for r in trained.history if r.valid is not None]
    assert list(zip(curve.epochs, curve.values, strict=True)) == evaluated
    assert curve.epochs == (2, 4) and curve.metric == "recall@10"
    assert curve.kept == f"{trained.best_epoch} of 4"
    assert catalogue.leaderboard().set_index("run").loc[run, "kept epoch"] == curve.kept
