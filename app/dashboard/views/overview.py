"""Overview tab: dataset card, leaderboard of runs, metric trade-off and the training panel."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn
import param

from app.dashboard.catalogue import LEADERBOARD_BEYOND, VERSUS_METRIC
from app.dashboard.plots import overview as plots
from app.dashboard.views.common import (
    TabView,
    caption,
    csv_download,
    friendly,
    guarded,
    hide_paths,
    hv_pane,
    live,
    markdown,
    md,
    no_selection,
    source_label,
    table_title,
)
from app.dashboard.views.validation import validation_panel
from data.errors import ReclensError
from engine.metric_labels import metric_label

DEFAULT_X = "ndcg@10"
SCOPES: dict[str, str] = {"this dataset": "dataset", "every dataset": "all"}
"""The leaderboard's choices of runs shown: the selected run's dataset, or every dataset."""
TIMING_PREFIX = "train "
"""Leaderboard columns of seconds per training stage are named ``train <stage>``."""


class OverviewView(TabView):
    """Dataset card, sortable leaderboard, two-metric trade-off scatter, live training."""

    x_metric = param.String(default=DEFAULT_X, doc="Metric on the scatter's x axis.")
    y_metric = param.String(default="recall@10", doc="Metric on the scatter's y axis.")
    scope = param.Selector(
        default="dataset", objects=list(SCOPES.values()), doc="Runs shown: one dataset or all."
    )
    job_id = param.String(default="", doc="The training job this session follows.")
    tick = param.Integer(default=0, doc="Bumped while a job runs, to refresh its curves.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cache_board: dict[str, pd.DataFrame] = {}
        metrics = self.metric_names()
        self._x = pn.widgets.Select(label="x metric", options=labelled(metrics), width=200)
        self._y = pn.widgets.Select(label="y metric", options=labelled(metrics), width=200)
        if metrics:
            self.x_metric = DEFAULT_X if DEFAULT_X in metrics else metrics[0]
            self.y_metric = next((m for m in metrics if m.startswith("recall")), metrics[-1])
        self._x.value, self._y.value = self.x_metric, self.y_metric
        self._x.link(self, value="x_metric")
        self._y.link(self, value="y_metric")
        self.state.param.watch(self._on_run, ["run", "dataset"])
        self._scope = pn.widgets.RadioButtonGroup(options=SCOPES, value=self.scope, width=240)
        self._scope.link(self, value="scope")
        self.param.watch(self._on_run, "scope")
        board = self.board()
        self._table = pn.widgets.Tabulator(
            board,
            pagination="local",
            page_size=10,
            sizing_mode="stretch_width",
            disabled=True,
            show_index=False,
            header_filters=False,
            selectable=1,
            hidden_columns=["created"],
            titles=board_titles(board),
            groups=board_groups(board),
        )
        self._table.on_click(self._on_row_click)
        self._model = pn.widgets.Select(label="model", options=self._models(), width=140)
        self._epochs = pn.widgets.IntInput(label="epochs", value=10, start=1, end=500, width=90)
        self._start = pn.widgets.Button(label="\u25b6 Train", color="primary", width=100)
        self._cancel = pn.widgets.Button(label="\u25a0 Cancel", color="danger", width=100)
        self._cancel.disabled = True
        self._progress = pn.indicators.Progress(value=0, max=100, width=260, bar_color="primary")
        self._status = markdown("", margin=(5, 10))
        self._broken = friendly("", "warning", visible=False)
        self._show_broken()
        self._start.on_click(self._on_start)
        self._cancel.on_click(self._on_cancel)
        self._poll: Any = None

    # -- data ------------------------------------------------------------------------------
    def board(self) -> pd.DataFrame:
        """Leaderboard: the service's run table plus beyond-accuracy means where stored, of the
        selected run's dataset (of every dataset when :attr:`scope` is ``"all"``)."""
        frame = self.service.leaderboard()
        if not frame.empty and self.scope == "dataset" and self.state.dataset:
            frame = frame[frame["dataset"] == self.state.dataset].reset_index(drop=True)
        if frame.empty:
            return pd.DataFrame({"run": [], "model": [], "dataset": []})
        extra = [self.service.beyond_means(r) for r in frame["run"]]
        beyond = pd.DataFrame(extra, index=frame.index)
        frame = pd.concat([frame, beyond.loc[:, ~beyond.columns.isin(frame.columns)]], axis=1)
        first = ["model", "dataset", "run", "created", "kept epoch"]
        timing = [c for c in frame.columns if c.startswith(TIMING_PREFIX)]
        rest = [c for c in frame.columns if c not in first and c not in timing]
        frame = frame[[c for c in first if c in frame.columns] + rest + timing]
        numeric = frame.select_dtypes("number").columns
        frame[numeric] = frame[numeric].round(4)
        return self._with_versus(frame)

    def _with_versus(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A column saying how each run compares with the selected run (paired, corrected)."""
        run = self.state.run
        try:
            versus = self.service.catalogue.versus(run) if run else {}
        except ReclensError:
            versus = {}
        column = f"vs selected run ({VERSUS_METRIC}, paired, Holm)"
        frame.insert(
            3,
            column,
            [
                "selected run" if r == run else versus.get(r, "other split: not comparable")
                for r in frame["run"]
            ],
        )
        return frame

    def _show_broken(self) -> None:
        """List the run folders the catalogue left out, each with why (as text)."""
        broken = self.service.catalogue.broken()
        self._broken.object = hide_paths(
            f"{len(broken)} broken run folder(s) left out: "
            + "; ".join(f"{run_id} ({reason})" for run_id, reason in broken)
        )
        self._broken.visible = bool(broken)

    def metric_names(self) -> list[str]:
        """Numeric leaderboard columns (the metrics that can go on the scatter's axes)."""
        frame = self.board()
        return [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]

    def _models(self) -> list[str]:
        try:
            return self.service.models()
        except Exception:  # noqa: BLE001 - the training panel then says so
            return []

    # -- callbacks -------------------------------------------------------------------------
    def _on_row_click(self, event: Any) -> None:
        frame = self._table.value
        if 0 <= event.row < len(frame):
            run = str(frame.iloc[event.row]["run"])
            if run != self.state.run:
                self.state.run = run

    def _on_start(self, _: Any = None) -> None:
        dataset = self.state.dataset or self.service.default_source
        source = self.service.source_of(dataset)
        try:
            context = pn.state.curdoc.session_context if pn.state.curdoc is not None else None
            job = self.service.start_training(
                source, self._model.value, self._epochs.value,
                owner=context.id if context is not None else "",
            )  # fmt: skip
        except Exception as err:  # noqa: BLE001 - shown in the panel
            self._status.object = md("**Could not start:** {err}", err=hide_paths(str(err)))
            return
        self.job_id = job.id
        self._cancel.disabled = False
        self._start.disabled = True
        self._status.object = md(
            "Training **{model}** on {source}\u2026", model=job.model, source=Path(job.source).name
        )
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._poll = pn.state.add_periodic_callback(self._refresh_job, period=500)

    def _on_run(self, *_: Any) -> None:
        """The selected run, its dataset or the runs shown changed: the table follows."""
        self._show_board()

    def _show_board(self) -> None:
        board = self.board()
        self._table.param.update(
            value=board, titles=board_titles(board), groups=board_groups(board)
        )

    def _on_cancel(self, _: Any = None) -> None:
        job = self.service.job(self.job_id)
        if job is not None:
            job.cancel.set()
            self._status.object = "Cancelling at the end of this epoch\u2026"

    def _refresh_job(self) -> None:
        job = self.service.job(self.job_id)
        if job is None:
            return
        self._progress.value = int(round(100 * job.progress))
        self.tick += 1
        if job.status == "running":
            return
        if self._poll is not None:
            self._poll.stop()
            self._poll = None
        self._cancel.disabled = True
        self._start.disabled = False
        icon = {"done": "\u2705", "cancelled": "\u23f9", "failed": "\u26a0"}.get(job.status, "")
        self._status.object = f"{icon} {hide_paths(job.message)}"
        self._show_board()
        self._show_broken()
        self._x.options = self._y.options = labelled(self.metric_names())
        if job.status == "done" and job.run_id:
            self.state.run = job.run_id

    # -- panels ----------------------------------------------------------------------------
    @param.depends("state.run")
    @guarded
    def dataset_card(self) -> pn.viewable.Viewable:
        """Sizes, long tail and user activity of the selected run's dataset."""
        if not self.state.run:
            return no_selection("Pick or train a run to see its dataset.")
        card = self.service.dataset_card(self.state.run)
        share = card.get("top20_item_share")
        facts = md(
            "### {name}\n**{users:,}** users \u00b7 **{items:,}** items \u00b7 "
            "**{interactions:,}** interactions \u00b7 density **{density:.2%}**"
            + (" \u00b7 top 20% items hold **{share:.0%}** of interactions" if share else "")
            + "\n\n<small>{source}</small>",
            name=card["name"],
            users=card["n_users"],
            items=card["n_items"],
            interactions=card["n_interactions"],
            density=card["density"],
            share=share,
            source=source_label(str(card.get("source", ""))),
        )
        return pn.Column(
            markdown(facts, margin=(0, 10)),
            pn.Row(
                pn.Column(
                    hv_pane(plots.long_tail(card["item_counts"])),
                    caption(
                        "Interactions per item, most popular first (log scale); orange items "
                        "gather 80% of all interactions, grey ones are the long tail."
                    ),
                ),
                pn.Column(
                    hv_pane(plots.activity_histogram(card["user_counts"])),
                    caption(
                        "How many users have how many interactions (log bins): most users "
                        "are light, a few very active."
                    ),
                ),
            ),
            sizing_mode="stretch_width",
        )

    @param.depends("x_metric", "y_metric", "scope", "state.run", "state.dataset")
    @guarded
    def tradeoff(self) -> pn.viewable.Viewable:
        """Scatter of the leaderboard's runs on the two chosen metrics."""
        frame = self.board()
        if frame.empty:
            return no_selection("No runs yet: train one below or run `reclens demo`.")
        return hv_pane(
            plots.tradeoff_scatter(
                frame,
                self.x_metric,
                self.y_metric,
                selected=self.state.run,
                x_label=metric_label(self.x_metric),
                y_label=metric_label(self.y_metric),
            )
        )

    @param.depends("state.run")
    @guarded
    def run_curve(self) -> pn.viewable.Viewable:
        """The selected run's validation curve, the epoch it kept marked."""
        return validation_panel(self.service, self.state.run)

    @param.depends("tick", "job_id")
    @guarded
    def job_curves(self) -> pn.viewable.Viewable:
        """Live training loss and validation curves of the job this session started."""
        job = self.service.job(self.job_id)
        if job is None:
            return no_selection("Start a run to watch its loss and validation NDCG@10 live.")
        if not job.reports:
            return pn.indicators.LoadingSpinner(value=True, size=40, label="loading data\u2026")
        reports = job.reports
        if all(r["loss"] is None for r in reports):
            valid = reports[-1]["valid"]
            return friendly(
                f"{job.model} is fitted in closed form (no epochs); validation NDCG@10 = "
                f"{valid if valid is None else round(valid, 4)}.",
                "info",
            )
        return pn.Column(
            hv_pane(plots.training_curves(reports, "valid ndcg@10")),
            caption(
                "Mean training loss (left) and validation NDCG@10 (right) per epoch; "
                "training stops early when validation stops improving."
            ),
        )

    def __panel__(self) -> pn.viewable.Viewable:
        board = pn.Column(
            pn.Row(
                markdown(md("### Leaderboard"), margin=(0, 10)),
                self._scope,
                pn.HSpacer(),
                csv_download(self.board, "reclens-leaderboard.csv"),
            ),
            self._table,
            self._broken,
            caption(
                "The saved runs of the selected run's dataset (or of every dataset) with the "
                "epoch each kept (of the epochs it ran), its test accuracy (recall, NDCG\u2026 "
                "at 10 and 20), beyond-accuracy metrics of its top-10 lists and, apart, the "
                "seconds each training stage took; click a column to sort, a row to select the "
                "run. "
                "\u201cvs selected run\u201d compares each run trained on the same split with "
                "the selected one over the same test users (paired t-test, Holm-corrected over "
                "the runs compared); higher or lower only where that test says so."
            ),
            sizing_mode="stretch_width",
        )
        scatter = pn.Column(
            pn.Row(self._x, self._y),
            live(self.tradeoff),
            caption(
                "Each point is a run placed by the two chosen metrics; the ringed one is the "
                "selected run. Look for runs that are good on both axes."
            ),
            sizing_mode="stretch_width",
        )
        training = pn.Column(
            markdown(md("### Train a model"), margin=(0, 10)),
            pn.Row(self._model, self._epochs, self._start, self._cancel),
            pn.Row(self._progress, self._status),
            live(self.job_curves),
            live(self.run_curve),
            sizing_mode="stretch_width",
        )
        return pn.Column(
            live(self.dataset_card),
            board,
            pn.Row(scatter, training, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


def labelled(metrics: list[str]) -> dict[str, str]:
    """Select options for metric ids: label in words -> id."""
    return {metric_label(m): m for m in metrics}


def board_titles(board: pd.DataFrame) -> dict[str, str]:
    """Leaderboard column titles: metrics in words, seconds by stage (escaped for Tabulator)."""
    return {
        column: table_title(
            str(column).removeprefix(TIMING_PREFIX)
            if str(column).startswith(TIMING_PREFIX)
            else metric_label(str(column))
        )
        for column in board.columns
    }


def board_groups(board: pd.DataFrame) -> dict[str, list[str]]:
    """Leaderboard column groups: test accuracy, beyond accuracy, training seconds."""
    columns = [str(c) for c in board.columns]
    groups = {
        "Test accuracy": [c for c in columns if re.fullmatch(r"[a-z_]+@\d+", c)],
        "Beyond accuracy (top-10 lists)": [c for c in columns if c in LEADERBOARD_BEYOND],
        "Training time (seconds)": [c for c in columns if c.startswith(TIMING_PREFIX)],
    }
    return {table_title(title): cols for title, cols in groups.items() if cols}
