"""Fairness and diversity tab: the user against the population, exposure, popularity bias and
group comparison, every table exportable as CSV.

The population histograms, the exposure plots and the group comparison are catalogue-level
results: drawn once per run and list length (their tables cached for every session, see
:mod:`app.dashboard.fairness_data`). A user switch only moves the user's marker on each
histogram (a new position in the marker's data source) and rewrites the heading.
"""

from __future__ import annotations

import functools
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param
from panel.io import hold

from app.dashboard import fairness_data as data
from app.dashboard.plots import fairness as plots
from app.dashboard.views.common import (
    TabView,
    caption,
    csv_download,
    friendly,
    guarded,
    hv_pane,
    live,
    markdown,
    md,
    no_selection,
    table_title,
)
from data.errors import ReclensError
from engine.beyond import METRIC_DOCS
from engine.metric_labels import metric_label

USER_METRICS: tuple[str, ...] = (
    "ndcg@10",
    "recall@10",
    "novelty",
    "arp",
    "long_tail_share",
    "ild_cooccurrence",
    "ild_genre",
    "calibration_kl",
    "unexpectedness",
)
"""Per-user metrics drawn against the population, in this order, when the run has them."""

GAP_TITLES: dict[str, str] = {
    "metric": "Metric",
    "max_group": "Group with the highest mean",
    "min_group": "Group with the lowest mean",
}
"""Column titles of the gaps table that are not metric ids."""

SelectedUser = hv.streams.Stream.define("SelectedUser", user="")
"""The stream that moves every histogram's user marker."""


def metric_doc(name: str) -> str:
    """The engine's one-line description of a metric (empty when it has none)."""
    return METRIC_DOCS.get(name, "")


class FairnessView(TabView):
    """User vs population, Lorenz curve with Gini, popularity bias and group comparison."""

    group_by = param.Selector(default="activity", objects=["activity"])
    group_metric = param.Selector(default="ndcg@10", objects=["ndcg@10"])

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cache_rows: dict[tuple, dict[str, float]] = {}
        self._marker_sources: dict[str, list[tuple[Any, str]]] = {}
        self._selected = SelectedUser(user=self.state.user)
        self._header = markdown(styles={"overflow-wrap": "anywhere"})
        self._note = friendly("", "info", visible=False)
        self._left_out = caption("")
        self._group_by = pn.widgets.Select.from_param(self.param.group_by, label="Group users by")
        self._group_metric = pn.widgets.Select.from_param(self.param.group_metric, label="Metric")
        self._group_by.width = 200
        self._group_metric.width = 320
        self.state.param.watch(self._on_run, "run")
        self.state.param.watch(self._on_user, "user")
        self._on_run()

    def _on_run(self, *_: Any) -> None:
        """Offer the run's groupings and metrics (accuracy first), before anything is drawn."""
        if not self.state.run:
            return
        try:
            loaded = self.service.load(self.state.run)
            groups, left_out = data.grouping_options(
                self.service.groupings(self.state.run), loaded.users
            )
            metrics = data.metric_columns(self.per_user())
        except Exception:  # noqa: BLE001 - the panels show the message
            return
        self.param.group_by.objects = groups
        if self.group_by not in groups and groups:
            self.group_by = "community" if "community" in groups else groups[0]
        self.param.group_metric.objects = data.metric_options(metrics)
        if self.group_metric not in metrics and metrics:
            self.group_metric = metrics[0]
        counts = [f"{c} ({loaded.users[c].nunique():,} values)" for c in left_out]
        self._left_out.object = md(
            "Accuracy metrics (NDCG@10, recall@10 ...) are the run's stored test metrics at "
            "their own cut-off; the others are of the top-K lists.{left}",
            left=(
                f" Not offered as groupings (too many distinct values): {', '.join(counts)}."
                if counts
                else ""
            ),
        )

    def _on_user(self, event: Any) -> None:
        """Move every drawn marker to the new user's value: a new ``x`` for each marker's
        data source, in one batch. (A HoloViews refresh of the nine histograms, each followed
        by a recomputation of the page's model graph, took seconds.) The stream keeps the user
        for any later drawing of the histograms."""
        user = str(event.new or "")
        self._selected.update(user=user)
        values = self.user_values(user) if user and self.state.run else {}
        with hold():
            for metric, sources in self._marker_sources.items():
                value = values.get(metric)
                x = [] if value is None or pd.isna(value) else [float(value)]
                sources[:] = [(src, field) for src, field in sources if src.document is not None]
                for src, field in sources:
                    src.data = {field: x}
            self._show_user()

    def _keep_source(self, metric: str, plot: Any, element: Any) -> None:
        """Plot hook of a marker: remember its data source so a user switch can move it."""
        source, field = plot.handles["source"], plot.handles["glyph"].x
        sources = self._marker_sources.setdefault(metric, [])
        if all(source is not s for s, _ in sources):
            sources.append((source, field))

    # -- data ------------------------------------------------------------------------------
    def per_user(self) -> pd.DataFrame:
        """Accuracy and beyond-accuracy metrics per evaluated user (``raw_id`` + metrics)."""
        return data.per_user(self.service, self.state.run, self.state.k)

    def user_values(self, user: str) -> dict[str, float]:
        """The metrics of ``user`` (raw id) in :meth:`per_user`; empty when not evaluated."""
        key = (self.state.run, self.state.k, user)
        if key not in self._cache_rows:
            if len(self._cache_rows) > 256:
                self._cache_rows.clear()
            frame = self.per_user()
            mine = frame[frame["raw_id"] == str(user)]
            self._cache_rows[key] = {} if mine.empty else mine.iloc[0].to_dict()
        return self._cache_rows[key]

    def user_marker(self, metric: str, user: str = "") -> hv.VLines:
        """The marker of ``user``'s value of ``metric`` (none when the user has no value)."""
        value = self.user_values(user).get(metric) if user else None
        marker = plots.user_marker(None if value is None or pd.isna(value) else float(value))
        return marker.opts(hooks=[functools.partial(self._keep_source, metric)])

    def catalogue(self) -> pd.DataFrame:
        """Catalogue metrics (``metric``, ``value``, ``meaning``) of the run's top-K lists."""
        result = self.service.beyond(self.state.run, self.state.k)
        frame = result.catalogue.to_pandas()
        frame["meaning"] = [metric_doc(m) for m in frame["metric"]]
        return frame

    # -- panels ----------------------------------------------------------------------------
    def _show_user(self) -> None:
        """The heading and the not-evaluated note of the selected user (updated in place)."""
        user = self.state.user
        self._header.object = md(
            "### User {user} against all evaluated users (top-{k})",
            user=user or "none",
            k=self.state.k,
        )
        missing = bool(user and self.state.run) and not self.user_values(user)
        if missing and not self._known(user):
            missing = False  # an unknown id: the page's message says so
        if missing:
            self._note.object = md(
                "User {user} has no held-out test items, so they are not among the evaluated "
                "users: only the population is shown.",
                user=user,
            )
        if self._note.visible != missing:
            self._note.visible = missing

    def _known(self, user: str) -> bool:
        """Whether ``user`` is a user of the selected run's dataset."""
        try:
            self.service.load(self.state.run).user_index(user)
        except ReclensError:
            return False
        return True

    @param.depends("state.run", "state.k")
    @guarded
    def user_panel(self) -> pn.viewable.Viewable:
        """Small histograms of per-user metrics with the selected user's value marked (the
        markers follow the selection in place)."""
        if not self.state.run:
            return no_selection("Pick a run.")
        frame = self.per_user()
        self._selected.update(user=str(self.state.user or ""))
        self._marker_sources.clear()  # the new plots' hooks fill it again
        self._show_user()
        plots_ = []
        for metric in [m for m in USER_METRICS if m in frame.columns]:
            marker = hv.DynamicMap(
                functools.partial(self.user_marker, metric), streams=[self._selected]
            )
            distribution = plots.metric_distribution(
                frame[metric].to_numpy(), marker, metric, metric_label(metric)
            )
            plots_.append(
                pn.Column(
                    hv_pane(distribution),
                    markdown(md("<small>{doc}</small>", doc=metric_doc(metric)), margin=(0, 10)),
                    sizing_mode="stretch_width",
                )
            )
        grid = pn.GridBox(*plots_, ncols=3, sizing_mode="stretch_width")
        return pn.Column(
            pn.Row(
                self._header,
                pn.HSpacer(),
                csv_download(self.per_user, "reclens-per-user-metrics.csv"),
            ),
            self._note,
            grid,
            caption(
                "Grey bars: how the metric is spread over all evaluated users; the orange line is "
                "the selected user's value."
            ),
            sizing_mode="stretch_width",
        )

    @param.depends("state.run", "state.k")
    @guarded
    def exposure_panel(self) -> pn.viewable.Viewable:
        """Lorenz curve of exposure with Gini, popularity bias, catalogue table."""
        if not self.state.run:
            return no_selection("Pick a run.")
        catalogue = self.catalogue()
        values = dict(zip(catalogue["metric"], catalogue["value"], strict=True))
        exposure = self.service.exposure(self.state.run, self.state.k)
        lorenz = plots.lorenz_curve(
            exposure["exposure"].to_numpy(), values.get("gini"), values.get("gini_corrected")
        )
        table = pn.widgets.Tabulator(
            catalogue.assign(
                metric=[metric_label(m) for m in catalogue["metric"]],
                value=catalogue["value"].round(4),
            ),
            disabled=True,
            show_index=False,
            height=330,
            sizing_mode="stretch_width",
            widths={"meaning": 420},
        )
        return pn.Column(
            pn.Row(
                pn.Column(
                    hv_pane(lorenz),
                    caption(
                        "Items sorted from least to most recommended: the further the curve "
                        "sags below the diagonal, the more exposure goes to few items. Gini 0 = "
                        "equal, 1 = all on a few; the corrected value rescales by what K and "
                        "the number of users allow."
                    ),
                    sizing_mode="stretch_width",
                ),
                pn.Column(
                    hv_pane(plots.popularity_bias(exposure)),
                    caption(
                        "Each item by how popular it was in training (x) and how many users' "
                        "top-K lists hold it (y); a rising cloud means popular items get "
                        "recommended more."
                    ),
                    csv_download(lambda: exposure, "reclens-exposure.csv"),
                    sizing_mode="stretch_width",
                ),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                markdown(md("### Catalogue metrics")),
                pn.HSpacer(),
                csv_download(self.catalogue, "reclens-catalogue-metrics.csv"),
            ),
            table,
            sizing_mode="stretch_width",
        )

    @param.depends("state.run", "state.k", "group_by", "group_metric")
    @guarded
    def group_panel(self) -> pn.viewable.Viewable:
        """Mean metric per user group (accuracy and beyond-accuracy metrics), with the gaps
        table."""
        if not self.state.run:
            return no_selection("Pick a run.")
        table = data.group_table(self.service, self.state.run, self.state.k, self.group_by)
        means = table.means.to_pandas()
        gaps = table.gaps.to_pandas()
        if self.group_metric not in means.columns:
            return no_selection("This run has no such metric: pick another one.")
        label = metric_label(self.group_metric)
        bars = plots.group_bars(means, self.group_metric, self.group_by, label)
        shown = gaps.round(4).assign(metric=[metric_label(m) for m in gaps["metric"]])
        titles = {c: table_title(GAP_TITLES.get(c, metric_label(c))) for c in shown.columns}
        return pn.Column(
            pn.Row(
                pn.Column(
                    hv_pane(bars),
                    caption(
                        md(
                            "Mean {metric} of each user group (hover for the group size); "
                            "large differences between bars are unequal treatment.",
                            metric=label,
                        )
                    ),
                    sizing_mode="stretch_width",
                ),
                pn.Column(
                    pn.widgets.Tabulator(
                        shown,
                        disabled=True,
                        show_index=False,
                        height=300,
                        titles=titles,
                        sizing_mode="stretch_width",
                    ),
                    caption(
                        "Per metric, the largest gap between two group means and the mean "
                        "absolute difference over all pairs of groups."
                    ),
                    csv_download(lambda: gaps, "reclens-group-gaps.csv"),
                    sizing_mode="stretch_width",
                ),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            live(self.user_panel),
            live(self.exposure_panel),
            markdown(md("### Groups of users")),
            pn.Row(self._group_by, self._group_metric),
            self._left_out,
            live(self.group_panel),
            sizing_mode="stretch_width",
        )
