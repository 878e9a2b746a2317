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

import numpy as np
import pandas as pd
import panel as pn
import param
from panel.io import hold

from app.dashboard.shaping import ExplanationView, TargetChoice, choose_target, compare_lists
from app.dashboard.views.common import (
    Message,
    Slot,
    TabView,
    caption,
    csv_download,
    friendly,
    markdown,
    md,
    table_title,
)
from app.dashboard.views.explain_fidelity import FidelitySection
from app.dashboard.views.explain_section import ExplanationSection
from app.dashboard.views.history_editor import HistoryEditor

log = logging.getLogger("reclens.dashboard")
SECTION_DEPS: dict[str, frozenset[str]] = {
    "history": frozenset({"run", "user", "whatif", "edited"}),
    "recs": frozenset({"run", "user", "k", "item", "whatif", "edited"}),
    "compare": frozenset({"run", "user", "k", "compare"}),
    "explanation": frozenset({"run", "user", "k", "item", "whatif", "edited"}),
}
"""Which selection fields (and view parameters) each part of the tab shows."""
FIDELITY_DEPS = frozenset({"run", "user", "item", "whatif", "edited"})


class ExplainView(TabView):
    """History, top-K, comparison, attribution bars, paths, fidelity and what-if editing."""

    whatif = param.Boolean(default=False, doc="Edit the history and recompute live.")
    edited = param.List(default=[], item_type=str, doc="Raw ids of the edited history.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cache_recs: dict[tuple, pd.DataFrame] = {}
        self._whatif_toggle = pn.widgets.Toggle(
            label="\u270e What-if: edit this history", color="light", width=230
        )
        self._whatif_toggle.link(self, value="whatif")
        self._editor = HistoryEditor()
        self._editor.param.watch(self._on_edit, "value")
        self._reset = pn.widgets.Button(label="Reset history", width=130)
        self._reset.on_click(self._on_reset)
        self._recs_table = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            height=330,
            selectable=1,
            hidden_columns=["item", "id"],
            # Every column fits the table's width (long titles wrap): score and hit stay in view.
            layout="fit_columns",
            widths={"rank": 70, "change": 85, "score": 80, "hit": 55},
            formatters={"title": {"type": "textarea"}, "genres": {"type": "textarea"}},
        )
        self._recs_table.on_click(self._on_rec_click)
        self.state.param.watch(self._on_user, ["user", "run"])
        self._pending: set[str] = set(SECTION_DEPS)
        self._build_lists()
        self.explained = ExplanationSection(self)
        self.fidelity = FidelitySection(self)
        watched = ["run", "user", "item", "k", "compare"]
        self.state.param.watch(self._on_change, [*watched, "tab"])
        self.param.watch(self._on_change, ["whatif", "edited"])

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
        return self.target_choice().item

    def target_choice(self) -> TargetChoice:
        """:meth:`target`, and the selected item when it is in the history (so not explained)."""
        recs = self.recommendations()
        if recs.empty:
            return TargetChoice("")
        item = self.state.item
        hist: set[str] = set()
        if item:
            hist = set(self.edited) if self.whatif else set(self._history_ids())
            self.service.load(self.state.run).item_index(item)  # friendly error if unknown
        return choose_target(item, hist, recs["id"].astype(str).tolist())

    def explanation(self) -> ExplanationView:
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
                self._editor.set_catalogue(loaded.items["id"], loaded.items["title"])
            except Exception:  # noqa: BLE001
                self._editor.set_catalogue([], [])
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
            self.fidelity.clear()
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
                self.explained.refresh()
            self.fidelity.follow()
        log.debug(
            "ExplainView.refresh %s took %.3f s", sorted(pending), time.perf_counter() - start
        )

    # -- panels ----------------------------------------------------------------------------
    def _build_lists(self) -> None:
        """History, top-K and comparison: components built once, filled by the panel methods."""
        self._history_md = markdown()
        # Read-only rows: a scrolling HTML table draws much faster than a Tabulator.
        self._history_table = pn.pane.DataFrame(
            pd.DataFrame({"title": [], "genres": [], "popularity": []}),
            index=False,
            height=330,
            sizing_mode="stretch_width",
            justify="left",
            styles={"overflow-y": "auto"},
        )
        self._edit_note = markdown()
        self._editor_box = pn.Column(
            self._editor,
            pn.Row(self._edit_note, self._reset),
            sizing_mode="stretch_width",
            visible=False,
        )
        self._history_slot = Slot(self._history_md, self._history_table, self._editor_box)
        self._recs_md = markdown()
        self._gone = friendly("", "info")
        self._gone.visible = False
        self._recs_slot = Slot(
            self._recs_md,
            self._recs_table,
            self._gone,
            caption(
                md(
                    "Recommendations with the model's score; *hit* marks items the user really "
                    "interacted with in the held-out test part."
                )
            ),
        )
        self._compare_frame = pd.DataFrame()
        # The table is built when runs are first chosen: until then the slot only shows a hint.
        self._compare_table: pn.widgets.Tabulator | None = None
        self._compare_caption = caption("")
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
            self._edit_note.object = md(
                "**Edited history:** {removed} removed, {added} added",
                removed=len(removed),
                added=len(added),
            )
        else:
            self._history_md.object = md(
                "**History of user {user}** (training part): {n} items",
                user=self.state.user,
                n=len(hist),
            )
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
        self._recs_md.object = md(
            "**Top-{k} for user {user}** ({model}); click a row to explain it",
            k=self.state.k,
            user=self.state.user,
            model=self.service.load(self.state.run).model_name,
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
            label = table_title(f"{loaded.model_name} ({run.rsplit('/', 1)[-1][-16:]})")
            lists[label] = self.service.recommend(run, self.state.user, self.state.k)[
                "title"
            ].tolist()
        self._compare_frame = compare_lists(lists)
        wrapped = {c: {"type": "textarea"} for c in lists}  # long titles wrap in their column
        if self._compare_table is None:
            self._compare_table = pn.widgets.Tabulator(
                self._compare_frame, disabled=True, show_index=False,
                sizing_mode="stretch_width", height=330,
                layout="fit_columns",  # every run's column in view
                widths={"rank": 70, "overlap": 95}, formatters=wrapped,
            )  # fmt: skip
            self._compare_slot.body.objects = [
                markdown(md("**Same user, several runs**")),
                self._compare_table,
                self._compare_caption,
                csv_download(lambda: self._compare_frame, "reclens-compare.csv"),
            ]
        else:
            self._compare_table.param.update(formatters=wrapped, value=self._compare_frame)
        self._compare_caption.object = md(
            "Top-K lists side by side; \u2713 marks items every run recommends. *overlap*: in "
            "how many of the {n} lists (the first one's included) the first run's item of that "
            "row appears, at any rank.",
            n=len(lists),
        )

    def __panel__(self) -> pn.viewable.Viewable:
        if self._pending and self.state.tab == "explain":
            self.refresh()
        return pn.Column(
            pn.Row(self._whatif_toggle, sizing_mode="stretch_width"),
            pn.Row(self._history_slot.layout, self._recs_slot.layout, sizing_mode="stretch_width"),
            self._compare_slot.layout,  # a row of its own: every compared run's column in view
            self.explained.layout,
            markdown(md("### Fidelity against other explainers"), margin=(0, 10)),
            self.fidelity,
            sizing_mode="stretch_width",
        )


def _change(before: int | None, now: int) -> str:
    """A rank change label: ``new``, ``\u2191n``, ``\u2193n`` or ``=``."""
    if before is None:
        return "new"
    if before == now:
        return "="
    return f"\u2191{before - now}" if before > now else f"\u2193{now - before}"
