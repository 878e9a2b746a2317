"""Explain tab: a user's history and recommendations, run comparison, SPINRec explanation,
fidelity against baseline explainers, and a what-if mode that edits the history live.

Every part of the tab is built once and updated in place when the selection changes (tables get
a new ``value``, plots a new revision of their DynamicMap), and only while the tab is shown.
The fidelity curves (several explainers, each rescoring many edited histories) are computed on
demand, with the button under the explanation.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from panel.io import hold

from app.dashboard.plots import explain as plots
from app.dashboard.views.common import (
    Message,
    Slot,
    TabView,
    caption,
    csv_download,
    friendly,
    hv_pane,
)
from data.errors import ReclensError

log = logging.getLogger("reclens.dashboard")
DEFAULT_BASELINES: tuple[str, ...] = ("ig_zero", "cosine", "random")
"""Explainers compared with SPINRec by default (cheap ones; LIME and SHAP sample and are slow)."""

SECTION_DEPS: dict[str, frozenset[str]] = {
    "history": frozenset({"run", "user", "whatif", "edited"}),
    "recs": frozenset({"run", "user", "k", "item", "whatif", "edited"}),
    "compare": frozenset({"run", "user", "k", "compare"}),
    "explanation": frozenset({"run", "user", "item", "whatif", "edited"}),
}
"""Which selection fields (and view parameters) each part of the tab shows."""
FIDELITY_DEPS = frozenset({"run", "user", "item", "whatif", "edited"})


class ExplainView(TabView):
    """History, top-K, comparison, attribution bars, paths, fidelity and what-if editing."""

    whatif = param.Boolean(default=False, doc="Edit the history and recompute live.")
    edited = param.List(default=[], item_type=str, doc="Raw ids of the edited history.")
    baselines = param.List(default=list(DEFAULT_BASELINES), doc="Explainers compared.")
    top = param.Integer(default=15, bounds=(3, 60), doc="Bars shown.")
    exp_rev = param.Integer(default=0, doc="Bumped when a new explanation is pushed.")
    fid_rev = param.Integer(default=0, doc="Bumped when new fidelity curves are pushed.")

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
        self._pending: set[str] = set(SECTION_DEPS)
        self._build_lists()
        self._build_explanation()
        self._build_fidelity()
        self._explanation_layout = self._layout_explanation()
        watched = ["run", "user", "item", "k", "compare"]
        self.state.param.watch(self._on_change, [*watched, "tab"])
        self.param.watch(self._on_change, ["whatif", "edited"])
        self.param.watch(self._on_baselines, ["baselines"])

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

    # -- refreshing in place ---------------------------------------------------------------
    def _on_change(self, *events: Any) -> None:
        """Mark the parts that show a changed field; redraw them now if the tab is shown."""
        names = {e.name for e in events}
        changed = names - {"tab"}
        for section, deps in SECTION_DEPS.items():
            if changed & deps:
                self._pending.add(section)
        if changed & FIDELITY_DEPS:
            self._clear_fidelity()
        if self.state.tab == "explain":
            self.refresh()

    def refresh(self) -> None:
        """Redraw every part whose fields changed since it was last drawn."""
        pending, self._pending = self._pending, set()
        start = time.perf_counter()
        with hold():  # one batch of model changes, one re-render in the browser
            if "history" in pending:
                self.history_panel()
            if "recs" in pending:
                self.recs_panel()
            if "compare" in pending:
                self.compare_panel()
            if "explanation" in pending:
                self.refresh_explanation()
            if self._fid_follow.value and self._fid_curves is None and self._fid_key is None:
                self.compute_fidelity()
        log.debug(
            "ExplainView.refresh %s took %.3f s", sorted(pending), time.perf_counter() - start
        )

    # -- panels ----------------------------------------------------------------------------
    def _build_lists(self) -> None:
        """History, top-K and comparison: components built once, filled by the panel methods."""
        self._history_md = pn.pane.Markdown("")
        # Read-only rows: a scrolling HTML table draws much faster than a Tabulator.
        self._history_table = pn.pane.DataFrame(
            pd.DataFrame({"title": [], "genres": [], "popularity": []}),
            index=False,
            height=330,
            sizing_mode="stretch_width",
            justify="left",
            styles={"overflow-y": "auto"},
        )
        self._edit_note = pn.pane.Markdown("")
        self._editor_box = pn.Column(
            self._editor,
            pn.Row(self._edit_note, self._reset),
            sizing_mode="stretch_width",
            visible=False,
        )
        self._history_slot = Slot(self._history_md, self._history_table, self._editor_box)
        self._recs_md = pn.pane.Markdown("")
        self._gone = friendly("", "info")
        self._gone.visible = False
        self._recs_slot = Slot(
            self._recs_md,
            self._recs_table,
            self._gone,
            caption(
                "Recommendations with the model's score; *hit* marks items the user really "
                "interacted with in the held-out test part."
            ),
        )
        self._compare_frame = pd.DataFrame()
        # The table is built when runs are first chosen: until then the slot only shows a hint.
        self._compare_table: pn.widgets.Tabulator | None = None
        self._compare_slot = Slot()

    def history_panel(self) -> pn.Column:
        """The user's history titles (or the what-if editor), updated in place."""
        return self._history_slot.fill(self._fill_history)

    def _fill_history(self) -> None:
        if not (self.state.run and self.state.user):
            raise Message("Pick a user in the sidebar.")
        hist = self.service.history_table(self.state.run, self.state.user)
        if self.whatif:
            original = set(hist["id"])
            kept = set(self.edited)
            added = [i for i in self.edited if i not in original]
            removed = [i for i in hist["id"] if i not in kept]
            self._edit_note.object = (
                f"**Edited history:** {len(removed)} removed, {len(added)} added"
            )
        else:
            self._history_md.object = f"**History of user {self.state.user}** ({len(hist)} items)"
            self._history_table.object = hist[["title", "genres", "popularity"]]
        self._history_md.visible = not self.whatif
        self._history_table.visible = not self.whatif
        self._editor_box.visible = self.whatif

    def recs_panel(self) -> pn.Column:
        """Top-K with scores; in what-if mode with rank changes against the original list."""
        return self._recs_slot.fill(self._fill_recs)

    def _fill_recs(self) -> None:
        if not (self.state.run and self.state.user):
            raise Message("Pick a user to see their recommendations.")
        recs = self.recommendations().copy()
        recs["score"] = recs["score"].round(4)
        shown = recs[["rank", "item", "id", "title", "genres", "score", "heldout"]].rename(
            columns={"heldout": "hit"}
        )
        gone: list[str] = []
        if self.whatif:
            before = self.service.recommend(self.state.run, self.state.user, self.state.k)
            was = dict(zip(before["id"], before["rank"], strict=True))
            shown.insert(
                1,
                "change",
                [_change(was.get(i), r) for i, r in zip(recs["id"], recs["rank"], strict=True)],
            )
            now = set(recs["id"])
            gone = [t for i, t in zip(before["id"], before["title"], strict=True) if i not in now]
        self._recs_md.object = (
            f"**Top-{self.state.k} for user {self.state.user}** "
            f"({self.service.load(self.state.run).model_name}); click a row to explain it"
        )
        self._recs_table.value = shown
        target = self.target()
        hits = np.flatnonzero(shown["id"].to_numpy() == target)
        self._recs_table.selection = hits.tolist()
        self._gone.object = "No longer recommended: " + "; ".join(gone)
        self._gone.visible = bool(gone)

    def compare_panel(self) -> pn.Column:
        """The same user's top-K from the selected run and the compared runs."""
        return self._compare_slot.fill(self._fill_compare)

    def _fill_compare(self) -> None:
        if not (self.state.run and self.state.user):
            raise Message("Pick a user to compare runs.")
        others = [r for r in self.state.compare if r != self.state.run]
        if not others:
            raise Message(
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
        self._compare_frame = plots.compare_lists(lists)
        if self._compare_table is None:
            self._compare_table = pn.widgets.Tabulator(
                self._compare_frame, disabled=True, show_index=False,
                sizing_mode="stretch_width", height=330,
            )  # fmt: skip
            self._compare_slot.body.objects = [
                pn.pane.Markdown("**Same user, several runs**"),
                self._compare_table,
                caption(
                    "Top-K lists side by side; \u2713 marks items every run recommends, "
                    "*overlap* counts the runs holding the first run's item at that rank."
                ),
                csv_download(lambda: self._compare_frame, "reclens-compare.csv"),
            ]
        else:
            self._compare_table.value = self._compare_frame

    # -- explanation: persistent components updated in place --------------------------------
    def _build_explanation(self) -> None:
        """The explanation's components, built once; :meth:`refresh_explanation` fills them."""
        self._exp: dict[str, Any] | None = None
        self._sentence = pn.pane.Alert(
            "", alert_type="success", css_classes=["reclens-sentence"], visible=False
        )
        self._exp_error = pn.pane.Alert("", alert_type="warning", visible=False)
        self._baseline_md = pn.pane.Markdown("")
        # A few rows: a plain HTML table draws much faster than a Tabulator.
        self._alternatives = pn.pane.DataFrame(
            pd.DataFrame(), index=False, sizing_mode="stretch_width", height=250,
            styles={"overflow-y": "auto"},
        )  # fmt: skip
        rev = self.param.exp_rev
        self._bars = hv.DynamicMap(pn.bind(self.bars_element, rev=rev, top=self.param.top))
        self._paths = hv.DynamicMap(pn.bind(self.paths_element, rev=rev))

    def refresh_explanation(self, *_: Any) -> None:
        """Recompute the explanation (cached by the engine service per run, user, item and
        history) and push it into the persistent plots when it changed."""
        self._pending.discard("explanation")
        start = time.perf_counter()
        try:
            if not (self.state.run and self.state.user):
                raise _Nothing("Pick a user and a recommended item to explain it.")
            exp = self.explanation()
            loaded = self.service.load(self.state.run)
        except Exception as err:  # noqa: BLE001 - shown as a message above the plots
            self._exp = None
            if not isinstance(err, ReclensError | _Nothing):
                log.exception("the explanation failed")
            self._exp_error.object = (
                str(err)
                if isinstance(err, ReclensError | _Nothing)
                else (f"The explanation could not be computed ({type(err).__name__}); see the log.")
            )
            self._exp_error.visible = True
            self._sentence.visible = False
            self.exp_rev += 1
            return
        self._exp_error.visible = False
        sentence = plots.summary_sentence(
            exp["attributions"], exp["target"], f"user {self.state.user}", model=loaded.model_name
        )
        self._sentence.param.update(object=sentence, visible=True)
        if exp is self._exp:
            return  # the same explanation (e.g. only K changed): nothing to redraw
        self._exp = exp
        self._baseline_md.object = (
            f"**Chosen baseline:** user {exp['baseline']} \u00b7 target probability "
            f"{exp['probability']:.4g}"
        )
        alt = exp["alternatives"].copy()
        alt["deletion AUC"] = alt["deletion AUC"].round(5)
        self._alternatives.object = alt
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
        if self._exp is None or "explanation" in self._pending:
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

    # -- fidelity: computed on demand --------------------------------------------------------
    def _build_fidelity(self) -> None:
        """The fidelity section: a button, a note, and the two curve plots (added on first use)."""
        self._fid_curves: pd.DataFrame | None = None
        self._fid_key: tuple | None = None
        self._fid_button = pn.widgets.Button(
            label="Compute fidelity curves", color="primary", width=220
        )
        self._fid_button.on_click(self._on_fid_click)
        self._fid_follow = pn.widgets.Checkbox(
            label="recompute when the selection changes", value=False, width=300
        )
        self._fid_note = pn.pane.Markdown(_FID_PROMPT)
        self._fid_plots = pn.Row(sizing_mode="stretch_width")
        self._fid_caption = caption(
            "Deletion: the target's probability as the most important history items are "
            "removed (a faithful explanation drops it fast). Insertion: keeping only the "
            "most important items (a faithful one raises it fast). SPINRec is orange."
        )
        self._fid_csv = csv_download(self._fidelity_frame, "reclens-fidelity.csv")
        self._fid_shown = pn.Column(
            self._fid_plots, self._fid_caption, self._fid_csv, sizing_mode="stretch_width",
            visible=False,
        )  # fmt: skip
        self._fid_error = pn.pane.Alert("", alert_type="warning", visible=False)
        self._fidelity_layout = pn.Column(
            self._baseline_picker,
            pn.Row(self._fid_button, self._fid_follow, sizing_mode="stretch_width"),
            self._fid_note,
            self._fid_error,
            self._fid_shown,
            sizing_mode="stretch_width",
        )

    def _fidelity_frame(self) -> pd.DataFrame:
        return pd.DataFrame() if self._fid_curves is None else self._fid_curves

    def _on_fid_click(self, _: Any = None) -> None:
        self._fid_button.loading = True
        try:
            with hold():
                self.compute_fidelity()
        finally:
            self._fid_button.loading = False

    def _on_baselines(self, _: Any = None) -> None:
        if self._fid_curves is not None and self.state.tab == "explain":
            self.compute_fidelity()  # the curves are shown: follow the chosen explainers

    def _clear_fidelity(self) -> None:
        """Forget the shown curves (the selection changed); they are recomputed on demand."""
        if self._fid_curves is None and self._fid_key is None:
            return
        self._fid_curves, self._fid_key = None, None
        self._fid_shown.visible = False
        self._fid_error.visible = False
        self._fid_note.object = _FID_PROMPT

    def compute_fidelity(self) -> pd.DataFrame | None:
        """Compute the deletion and insertion curves of SPINRec and the chosen explainers for
        the current target (cached by the engine service) and draw them."""
        start = time.perf_counter()
        try:
            if not (self.state.run and self.state.user):
                raise _Nothing("Pick a user to compare explainers.")
            target = self.target()
            hist = self.history_indices()
            names = tuple(self.baselines)
            curves = self.service.fidelity(
                self.state.run, self.state.user, target, names, history=hist
            )
        except Exception as err:  # noqa: BLE001 - shown as a message in place of the curves
            if not isinstance(err, ReclensError | _Nothing):
                log.exception("the fidelity curves failed")
            self._fid_curves = None
            self._fid_key = ("failed",)
            self._fid_error.object = (
                str(err)
                if isinstance(err, ReclensError | _Nothing)
                else f"The fidelity curves could not be computed ({type(err).__name__}); "
                "see the log."
            )
            self._fid_error.visible = True
            self._fid_shown.visible = False
            return None
        self._fid_curves = curves
        self._fid_key = (self.state.run, self.state.user, target, names)
        self._fid_error.visible = False
        if not self._fid_plots.objects:
            rev = self.param.fid_rev
            self._fid_plots.objects = [
                hv_pane(hv.DynamicMap(pn.bind(self.fidelity_element, "deletion", rev=rev))),
                hv_pane(hv.DynamicMap(pn.bind(self.fidelity_element, "insertion", rev=rev))),
            ]
        self.fid_rev += 1
        self._fid_shown.visible = True
        shown = ", ".join(["spinrec", *[n for n in names if n != "spinrec"]])
        self._fid_note.object = (
            f"Fidelity of **{shown}** for this target ({time.perf_counter() - start:.1f} s)."
        )
        return curves

    def fidelity_element(self, kind: str, rev: int = 0) -> hv.Overlay:
        """Deletion or insertion curves of the last computed fidelity (empty before)."""
        curves = self._fidelity_frame()
        if curves.empty:
            curves = pd.DataFrame({"explainer": [], "kind": [], "fraction": [], "probability": []})
        return plots.fidelity_curves(curves, kind).opts(framewise=True)

    def fidelity_panel(self) -> pn.viewable.Viewable:
        """Explainer choice, the compute button and the deletion and insertion curves (shown
        once :meth:`compute_fidelity` ran for the current selection)."""
        return self._fidelity_layout

    def __panel__(self) -> pn.viewable.Viewable:
        if self._pending and self.state.tab == "explain":
            self.refresh()
        return pn.Column(
            pn.Row(self._whatif_toggle, sizing_mode="stretch_width"),
            pn.Row(
                self._history_slot.layout,
                self._recs_slot.layout,
                self._compare_slot.layout,
                sizing_mode="stretch_width",
            ),
            self._explanation_layout,
            pn.pane.Markdown("### Fidelity against other explainers", margin=(0, 10)),
            self.fidelity_panel(),
            sizing_mode="stretch_width",
        )


_FID_PROMPT = (
    "Compare SPINRec's faithfulness with other explainers: choose them above and press "
    "**Compute fidelity curves** (a few seconds; LIME and Kernel SHAP take longer)."
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
