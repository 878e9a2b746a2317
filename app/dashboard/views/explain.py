"""Explain tab: a user's history and recommendations, run comparison, SPINRec explanation,
fidelity against baseline explainers, and a what-if mode that edits the history live."""

from __future__ import annotations

import logging
import time
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from app.dashboard.plots import explain as plots
from app.dashboard.views.common import (
    TabView,
    caption,
    csv_download,
    friendly,
    guarded,
    hv_pane,
    live,
    no_selection,
)
from data.errors import ReclensError

log = logging.getLogger("reclens.dashboard")
DEFAULT_BASELINES: tuple[str, ...] = ("ig_zero", "cosine", "random")


class ExplainView(TabView):
    """History, top-K, comparison, attribution bars, paths, fidelity and what-if editing."""

    whatif = param.Boolean(default=False, doc="Edit the history and recompute live.")
    edited = param.List(default=[], item_type=str, doc="Raw ids of the edited history.")
    baselines = param.List(default=list(DEFAULT_BASELINES), doc="Explainers compared.")
    top = param.Integer(default=15, bounds=(3, 60), doc="Bars shown.")
    exp_rev = param.Integer(default=0, doc="Bumped when a new explanation is pushed.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cache_recs: dict[tuple, pd.DataFrame] = {}
        self._whatif_toggle = pn.widgets.Toggle(
            label="\u270e What-if: edit this history", color="light", width=230
        )
        self._whatif_toggle.link(self, value="whatif")
        self._editor = pn.widgets.MultiChoice(
            label="History (remove items with \u00d7, add items by typing a title)",
            options={},
            sizing_mode="stretch_width",
            search_option_limit=30,
            max_items=None,
        )
        self._editor.param.watch(self._on_edit, "value")
        self._reset = pn.widgets.Button(label="Reset history", width=130)
        self._reset.on_click(self._on_reset)
        names = self.service.baseline_explainers()
        self._baseline_picker = pn.widgets.MultiChoice(
            label="Compare SPINRec with",
            options=names,
            value=[n for n in DEFAULT_BASELINES if n in names],
            sizing_mode="stretch_width",
        )
        self._baseline_picker.link(self, value="baselines")
        self.baselines = list(self._baseline_picker.value)
        self._recs_table = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            height=330,
            selectable=1,
            hidden_columns=["item", "id"],
        )
        self._recs_table.on_click(self._on_rec_click)
        self.state.param.watch(self._on_user, ["user", "run"])
        self._stale = True
        self._build_explanation()
        self._explanation_layout = self._layout_explanation()

    # -- helpers ---------------------------------------------------------------------------
    def _history_ids(self) -> list[str]:
        return self.service.history_table(self.state.run, self.state.user)["id"].tolist()

    def history_indices(self) -> np.ndarray | None:
        """The edited history as item indices (None when what-if is off)."""
        if not self.whatif:
            return None
        loaded = self.service.load(self.state.run)
        lookup = dict(zip(loaded.items["id"], loaded.items["item"], strict=True))
        return np.array([lookup[i] for i in self.edited if i in lookup], dtype=np.int64)

    def recommendations(self) -> pd.DataFrame:
        """The top-K of the selected user (with the edited history in what-if mode)."""
        hist = self.history_indices()
        key = (
            self.state.run,
            self.state.user,
            self.state.k,
            None if hist is None else hist.tobytes(),
        )
        if key not in self._cache_recs:
            if len(self._cache_recs) > 32:
                self._cache_recs.clear()
            self._cache_recs[key] = self.service.recommend(
                self.state.run, self.state.user, self.state.k, history=hist
            )
        return self._cache_recs[key]

    def target(self) -> str:
        """The explained item: the selected item when it is recommendable, else the top-1."""
        recs = self.recommendations()
        if recs.empty:
            return ""
        item = self.state.item
        if item:
            hist = set(self.edited) if self.whatif else set(self._history_ids())
            loaded = self.service.load(self.state.run)
            loaded.item_index(item)  # friendly error for an unknown item
            if item not in hist:
                return item
        return str(recs["id"].iloc[0])

    def explanation(self) -> dict[str, Any]:
        """The SPINRec explanation of :meth:`target` for the selected user."""
        return self.service.explain(
            self.state.run, self.state.user, self.target(), history=self.history_indices()
        )

    # -- callbacks -------------------------------------------------------------------------
    def _on_user(self, _: Any = None) -> None:
        if self.whatif:
            self._on_reset()

    def _on_edit(self, event: Any) -> None:
        self.edited = [str(v) for v in event.new]

    def _on_reset(self, _: Any = None) -> None:
        try:
            ids = self._history_ids()
        except Exception:  # noqa: BLE001 - an unknown user shows its message elsewhere
            ids = []
        self._editor.value = ids
        self.edited = list(ids)

    @param.depends("whatif", watch=True)
    def _on_whatif(self) -> None:
        if self.whatif:
            try:
                loaded = self.service.load(self.state.run)
                self._editor.options = {
                    f"{t} [{i}]": i
                    for i, t in zip(loaded.items["id"], loaded.items["title"], strict=True)
                }
            except Exception:  # noqa: BLE001
                self._editor.options = {}
            self._on_reset()

    def _on_rec_click(self, event: Any) -> None:
        frame = self._recs_table.value
        if 0 <= event.row < len(frame):
            self.state.item = str(frame.iloc[event.row]["id"])

    # -- panels ----------------------------------------------------------------------------
    @param.depends("state.run", "state.user", "whatif", "edited")
    @guarded
    def history_panel(self) -> pn.viewable.Viewable:
        """The user's history titles (or the what-if editor)."""
        if not (self.state.run and self.state.user):
            return no_selection("Pick a user in the sidebar.")
        hist = self.service.history_table(self.state.run, self.state.user)
        if self.whatif:
            original = set(hist["id"])
            added = [i for i in self.edited if i not in original]
            removed = [i for i in hist["id"] if i not in set(self.edited)]
            note = f"{len(removed)} removed, {len(added)} added"
            return pn.Column(
                self._editor,
                pn.Row(pn.pane.Markdown(f"**Edited history:** {note}"), self._reset),
                sizing_mode="stretch_width",
            )
        table = pn.widgets.Tabulator(
            hist[["title", "genres", "popularity"]],
            disabled=True,
            show_index=False,
            height=330,
            sizing_mode="stretch_width",
            pagination=None,
        )
        return pn.Column(
            pn.pane.Markdown(f"**History of user {self.state.user}** ({len(hist)} items)"),
            table,
            sizing_mode="stretch_width",
        )

    @param.depends("state.run", "state.user", "state.k", "state.item", "whatif", "edited")
    @guarded
    def recs_panel(self) -> pn.viewable.Viewable:
        """Top-K with scores; in what-if mode with rank changes against the original list."""
        if not (self.state.run and self.state.user):
            return no_selection("Pick a user to see their recommendations.")
        recs = self.recommendations().copy()
        recs["score"] = recs["score"].round(4)
        shown = recs[["rank", "item", "id", "title", "genres", "score", "heldout"]].rename(
            columns={"heldout": "hit"}
        )
        if self.whatif:
            before = self.service.recommend(self.state.run, self.state.user, self.state.k)
            was = dict(zip(before["id"], before["rank"], strict=True))
            shown.insert(
                1,
                "change",
                [_change(was.get(i), r) for i, r in zip(recs["id"], recs["rank"], strict=True)],
            )
            gone = [
                t
                for i, t in zip(before["id"], before["title"], strict=True)
                if i not in set(recs["id"])
            ]
        else:
            gone = []
        self._recs_table.value = shown
        target = self.target()
        hits = np.flatnonzero(shown["id"].to_numpy() == target)
        self._recs_table.selection = hits.tolist()
        parts: list[Any] = [
            pn.pane.Markdown(
                f"**Top-{self.state.k} for user {self.state.user}** "
                f"({self.service.load(self.state.run).model_name}); click a row to explain it"
            ),
            self._recs_table,
            caption(
                "Recommendations with the model's score; *hit* marks items the user really "
                "interacted with in the held-out test part."
            ),
        ]
        if gone:
            parts.insert(2, friendly("No longer recommended: " + "; ".join(gone), "info"))
        return pn.Column(*parts, sizing_mode="stretch_width")

    @param.depends("state.run", "state.user", "state.k", "state.compare")
    @guarded
    def compare_panel(self) -> pn.viewable.Viewable:
        """The same user's top-K from the selected run and the compared runs."""
        if not (self.state.run and self.state.user):
            return no_selection("Pick a user to compare runs.")
        others = [r for r in self.state.compare if r != self.state.run]
        if not others:
            return no_selection(
                "Choose runs under \u201cCompare with\u201d in the sidebar to see this user's "
                "top-K from several models side by side."
            )
        lists: dict[str, list[str]] = {}
        for run in [self.state.run, *others]:
            loaded = self.service.load(run)
            if loaded.dataset.name != self.service.load(self.state.run).dataset.name:
                continue
            label = f"{loaded.model_name} ({run.rsplit('/', 1)[-1][-16:]})"
            lists[label] = self.service.recommend(run, self.state.user, self.state.k)[
                "title"
            ].tolist()
        frame = plots.compare_lists(lists)
        table = pn.widgets.Tabulator(
            frame, disabled=True, show_index=False, sizing_mode="stretch_width", height=330
        )
        return pn.Column(
            pn.pane.Markdown("**Same user, several runs**"),
            table,
            caption(
                "Top-K lists side by side; \u2713 marks items every run recommends, *overlap* "
                "counts the runs holding the first run's item at that rank."
            ),
            csv_download(lambda: frame, "reclens-compare.csv"),
            sizing_mode="stretch_width",
        )

    # -- explanation: persistent components updated in place --------------------------------
    def _build_explanation(self) -> None:
        """The explanation's components, built once; :meth:`refresh_explanation` fills them."""
        self._exp: dict[str, Any] | None = None
        self._sentence = pn.pane.Alert(
            "", alert_type="success", css_classes=["reclens-sentence"], visible=False
        )
        self._exp_error = pn.pane.Alert("", alert_type="warning", visible=False)
        self._baseline_md = pn.pane.Markdown("")
        self._alternatives = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, height=250,
            sizing_mode="stretch_width",
        )  # fmt: skip
        rev = self.param.exp_rev
        self._bars = hv.DynamicMap(pn.bind(self.bars_element, rev=rev, top=self.param.top))
        self._paths = hv.DynamicMap(pn.bind(self.paths_element, rev=rev))
        watched = ["run", "user", "item", "k"]
        self.state.param.watch(self.refresh_explanation, [*watched, "tab"])
        self.param.watch(self.refresh_explanation, ["whatif", "edited"])

    def refresh_explanation(self, *_: Any) -> None:
        """Recompute the explanation (only while the Explain tab is shown) and push it."""
        if self.state.tab != "explain" and _:
            self._stale = True
            return
        self._stale = False
        start = time.perf_counter()
        try:
            if not (self.state.run and self.state.user):
                raise _Nothing("Pick a user and a recommended item to explain it.")
            exp = self.explanation()
            loaded = self.service.load(self.state.run)
        except Exception as err:  # noqa: BLE001 - shown as a message above the plots
            self._exp = None
            self._exp_error.object = (
                str(err)
                if isinstance(err, ReclensError | _Nothing)
                else (f"The explanation could not be computed ({type(err).__name__}); see the log.")
            )
            self._exp_error.visible = True
            self._sentence.visible = False
            self.exp_rev += 1
            return
        self._exp = exp
        self._exp_error.visible = False
        self._sentence.object = plots.summary_sentence(
            exp["attributions"], exp["target"], f"user {self.state.user}", model=loaded.model_name
        )
        self._sentence.visible = True
        self._baseline_md.object = (
            f"**Chosen baseline:** user {exp['baseline']} \u00b7 target probability "
            f"{exp['probability']:.4g}"
        )
        alt = exp["alternatives"].copy()
        alt["deletion AUC"] = alt["deletion AUC"].round(5)
        self._alternatives.value = alt
        self.exp_rev += 1
        log.debug("refresh_explanation took %.3f s", time.perf_counter() - start)

    def bars_element(self, rev: int = 0, top: int = 15) -> hv.Bars:
        """Attribution bars of the current explanation (empty without one)."""
        if self._exp is None:
            return hv.Bars([], "label", "attribution").opts(responsive=True, height=440)
        exp = self._exp
        bars = plots.attribution_bars(
            exp["attributions"], top=top, title=f"Why \u201c{exp['target']}\u201d?"
        )
        return bars.opts(height=440, framewise=True)

    def paths_element(self, rev: int = 0) -> hv.Overlay:
        """SPINRec path curves of the current explanation (empty without one)."""
        exp = self._exp
        if exp is None:
            return hv.Overlay([hv.Curve([], "alpha", "probability")])
        paths = plots.path_curves(exp["alphas"], exp["paths"], exp["chosen"], exp["path_labels"])
        return paths.opts(framewise=True)

    def explanation_panel(self) -> pn.viewable.Viewable:
        """Sentence, attribution bars, baseline choice and path curves (updated in place)."""
        if self._exp is None or self._stale:
            self.refresh_explanation()
        return self._explanation_layout

    def _layout_explanation(self) -> pn.Column:
        return pn.Column(
            self._exp_error,
            self._sentence,
            pn.Row(
                pn.Column(
                    hv_pane(self._bars),
                    caption(
                        "SPINRec attribution of each history item to the target's probability: "
                        "green bars pushed the recommendation up, red ones down; longest first."
                    ),
                    csv_download(self._attributions, "reclens-attributions.csv"),
                    sizing_mode="stretch_width",
                ),
                pn.Column(
                    self._baseline_md,
                    self._alternatives,
                    caption(
                        "The sampled baseline users (one path each); SPINRec keeps the path "
                        "whose explanation has the lowest deletion AUC (most faithful)."
                    ),
                    sizing_mode="stretch_width",
                ),
                sizing_mode="stretch_width",
            ),
            hv_pane(self._paths),
            caption(
                "Target probability along each path from a baseline user's history (alpha 0) "
                "to this user's history (alpha 1); the chosen path is drawn thick in orange."
            ),
            sizing_mode="stretch_width",
        )

    def _attributions(self) -> pd.DataFrame:
        return pd.DataFrame() if self._exp is None else self._exp["attributions"]

    @param.depends(
        "state.run", "state.user", "state.item", "state.k", "whatif", "edited", "baselines"
    )
    @guarded
    def fidelity_panel(self) -> pn.viewable.Viewable:
        """Deletion and insertion curves of SPINRec against the chosen baseline explainers."""
        if not (self.state.run and self.state.user):
            return no_selection("Pick a user to compare explainers.")
        curves = self.service.fidelity(
            self.state.run,
            self.state.user,
            self.target(),
            tuple(self.baselines),
            history=self.history_indices(),
        )
        return pn.Column(
            pn.Row(
                hv_pane(plots.fidelity_curves(curves, "deletion")),
                hv_pane(plots.fidelity_curves(curves, "insertion")),
                sizing_mode="stretch_width",
            ),
            caption(
                "Deletion: the target's probability as the most important history items are "
                "removed (a faithful explanation drops it fast). Insertion: keeping only the "
                "most important items (a faithful one raises it fast). SPINRec is orange."
            ),
            csv_download(lambda: curves, "reclens-fidelity.csv"),
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self._whatif_toggle, sizing_mode="stretch_width"),
            pn.Row(
                live(self.history_panel),
                live(self.recs_panel),
                live(self.compare_panel),
                sizing_mode="stretch_width",
            ),
            self.explanation_panel(),
            pn.pane.Markdown("### Fidelity against other explainers", margin=(0, 10)),
            self._baseline_picker,
            live(self.fidelity_panel),
            sizing_mode="stretch_width",
        )


class _Nothing(Exception):
    """Nothing is selected yet (not an error)."""


def _change(before: int | None, now: int) -> str:
    """A rank change label: ``new``, ``\u2191n``, ``\u2193n`` or ``=``."""
    if before is None:
        return "new"
    if before == now:
        return "="
    return f"\u2191{before - now}" if before > now else f"\u2193{now - before}"
