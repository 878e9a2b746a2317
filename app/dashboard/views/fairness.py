"""Fairness and diversity tab: the user against the population, exposure, popularity bias and
group comparison, every table exportable as CSV."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param

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
)
from engine.beyond import METRIC_DOCS

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


def metric_doc(name: str) -> str:
    """The engine's one-line description of a metric (empty when it has none)."""
    return METRIC_DOCS.get(name, "")


class FairnessView(TabView):
    """User vs population, Lorenz curve with Gini, popularity bias and group comparison."""

    group_by = param.Selector(default="activity", objects=["activity"])
    group_metric = param.Selector(default="ndcg@10", objects=["ndcg@10"])

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._group_by = pn.widgets.Select.from_param(self.param.group_by, label="Group users by")
        self._group_metric = pn.widgets.Select.from_param(self.param.group_metric, label="Metric")
        self._group_by.width = self._group_metric.width = 200
        self.state.param.watch(self._on_run, "run")
        self._on_run()

    def _on_run(self, *_: Any) -> None:
        if not self.state.run:
            return
        try:
            groups = self.service.groupings(self.state.run)
        except Exception:  # noqa: BLE001 - the panel shows the message
            return
        self.param.group_by.objects = groups
        self._group_by.options = groups
        if self.group_by not in groups and groups:
            self.group_by = "community" if "community" in groups else groups[0]

    # -- data ------------------------------------------------------------------------------
    def per_user(self) -> pd.DataFrame:
        """Accuracy and beyond-accuracy metrics per evaluated user (``raw_id`` + metrics)."""
        run = self.state.run
        loaded = self.service.load(run)
        result = self.service.beyond(run, self.state.k)
        beyond = result.per_user.to_pandas().drop(columns=["raw_id"], errors="ignore")
        accuracy = loaded.run.per_user_metrics().to_pandas()
        acc_cols = [c for c in accuracy.columns if c != "raw_id"]
        frame = beyond.merge(accuracy[acc_cols], on="user", how="left")
        users = frame["user"].to_numpy().astype("int64")
        frame.insert(1, "raw_id", loaded.users["id"].to_numpy()[users])
        return frame

    def catalogue(self) -> pd.DataFrame:
        """Catalogue metrics (``metric``, ``value``, ``meaning``) of the run's top-K lists."""
        result = self.service.beyond(self.state.run, self.state.k)
        frame = result.catalogue.to_pandas()
        frame["meaning"] = [metric_doc(m) for m in frame["metric"]]
        return frame

    # -- panels ----------------------------------------------------------------------------
    @param.depends("state.run", "state.user", "state.k")
    @guarded
    def user_panel(self) -> pn.viewable.Viewable:
        """Small histograms of per-user metrics with the selected user's value marked."""
        if not self.state.run:
            return no_selection("Pick a run.")
        frame = self.per_user()
        mine = frame[frame["raw_id"].astype(str) == str(self.state.user)]
        note = ""
        if self.state.user and mine.empty:
            note = (
                f"User {self.state.user} has no held-out test items, so they are not among the "
                "evaluated users: only the population is shown."
            )
        plots_ = []
        for metric in [m for m in USER_METRICS if m in frame.columns]:
            value = None if mine.empty else mine[metric].iloc[0]
            value = None if value is None or pd.isna(value) else float(value)
            plots_.append(
                pn.Column(
                    hv_pane(plots.metric_distribution(frame[metric].to_numpy(), value, metric)),
                    markdown(md("<small>{doc}</small>", doc=metric_doc(metric)), margin=(0, 10)),
                    sizing_mode="stretch_width",
                )
            )
        grid = pn.GridBox(*plots_, ncols=3, sizing_mode="stretch_width")
        return pn.Column(
            pn.Row(
                markdown(
                    md(
                        "### User {user} against all evaluated users (top-{k})",
                        user=self.state.user or "none",
                        k=self.state.k,
                    )
                ),
                pn.HSpacer(),
                csv_download(self.per_user, "reclens-per-user-metrics.csv"),
            ),
            *([friendly(note, "info")] if note else []),
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
            catalogue.assign(value=catalogue["value"].round(4)),
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
        """Mean metric per user group, with the gaps table."""
        if not self.state.run:
            return no_selection("Pick a run.")
        result = self.service.beyond(self.state.run, self.state.k, self.group_by)
        if result.groups is None:
            return no_selection("This grouping gives no groups.")
        means = result.groups.means.to_pandas()
        gaps = result.groups.gaps.to_pandas()
        metrics = [c for c in means.columns if c not in ("group", "n_users")]
        if self.group_metric not in metrics and metrics:
            self.param.group_metric.objects = metrics
            self._group_metric.options = metrics
            self.group_metric = metrics[0]
            return self.group_panel()
        self._group_metric.options = metrics
        bars = plots.group_bars(means, self.group_metric, self.group_by)
        return pn.Column(
            pn.Row(
                pn.Column(
                    hv_pane(bars),
                    caption(
                        md(
                            "Mean {metric} of each user group (hover for the group size); "
                            "large differences between bars are unequal treatment.",
                            metric=self.group_metric,
                        )
                    ),
                    sizing_mode="stretch_width",
                ),
                pn.Column(
                    pn.widgets.Tabulator(
                        gaps.round(4),
                        disabled=True,
                        show_index=False,
                        height=300,
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
            live(self.group_panel),
            sizing_mode="stretch_width",
        )
