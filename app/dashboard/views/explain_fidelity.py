"""The Explain tab's fidelity section: SPINRec against baseline explainers, on demand.

The curves (several explainers, each rescoring many edited histories) are computed only when
the button is pressed (or, with the box ticked, whenever the selection changes), through the
engine service's one batched fidelity pass. They follow the path plot's measure selector: the
model's own output (named for what it is, a softmax or sigmoid probability or a score) or the
target's rank, comparable across models.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import holoviews as hv
import pandas as pd
import panel as pn
import param
from panel.io import hold

from app.dashboard.fidelity_jobs import MAX_USERS
from app.dashboard.plots import explain as plots
from app.dashboard.plots.explainer_style import coincide_note
from app.dashboard.shaping import quantity_label
from app.dashboard.views.common import (
    Markup,
    caption,
    csv_download,
    friendly,
    hide_paths,
    hv_pane,
    markdown,
    md,
)
from data.errors import ReclensError

if TYPE_CHECKING:
    from app.dashboard.views.explain import ExplainView

log = logging.getLogger("reclens.dashboard")
DEFAULT_BASELINES: tuple[str, ...] = ("ig_zero", "cosine", "random")
"""Explainers compared with SPINRec by default (cheap ones; LIME and SHAP sample and are slow)."""
PROMPT = md(
    "Compare SPINRec's faithfulness with other explainers: choose them above and press "
    "**Compute fidelity curves** (a few seconds; LIME and Kernel SHAP take longer)."
)


NO_EVIDENCE = (
    "To compare the explainers across users, run `reclens fidelity` on this run's dataset and "
    "model; its paired, corrected results are then summarised here."
)


MEASURES: tuple[str, ...] = ("value", "rank")
KINDS: tuple[str, ...] = ("deletion", "insertion")
STYLE_NOTE = (
    "SPINRec is orange; every explainer keeps its colour and marker shape in every view and in "
    "the export."
)


def fidelity_caption(measure: str, quantity: str) -> Markup:
    """What the deletion and insertion plots draw, for the model's ``quantity`` (a softmax or
    sigmoid probability, a score) or, with ``measure="rank"``, the target's rank."""
    if measure == "rank":
        return md(
            "Deletion: the target's rank (1 = top, comparable across models) among the items the "
            "top-K ranks (outside the history and the validation items) as the most important "
            "history items are removed (a faithful explanation sends it down the list fast). "
            "Insertion: keeping only the most important items (a faithful one lifts it up the "
            "list fast). Items the model rates exactly as high as the target are not counted "
            "ahead of it: where it rates every item alike (ease with no history left) the "
            "target reads rank 1. {style}",
            style=STYLE_NOTE,
        )
    return md(
        "Deletion: the target's {quantity} (the model's own output, not comparable across "
        "models) as the most important history items are removed (a faithful explanation drops "
        "it fast). Insertion: keeping only the most important items (a faithful one raises it "
        "fast). {style}",
        quantity=quantity,
        style=STYLE_NOTE,
    )


class NothingSelected(Exception):
    """Nothing is selected yet (not an error)."""


class FidelitySection(pn.viewable.Viewer):
    """Explainer picker, compute button, note and the deletion and insertion curve plots."""

    baselines = param.List(default=list(DEFAULT_BASELINES), doc="Explainers compared.")
    rev = param.Integer(default=0, doc="Bumped when new fidelity curves are pushed.")

    def __init__(self, view: ExplainView, **params: Any) -> None:
        super().__init__(**params)
        self.view = view
        names = view.service.baseline_explainers()
        self._picker = pn.widgets.MultiChoice(
            label="Compare SPINRec with",
            options=names,
            value=[n for n in DEFAULT_BASELINES if n in names],
            sizing_mode="stretch_width",
        )
        self._picker.link(self, value="baselines")
        self.baselines = list(self._picker.value)
        self._build()
        self.param.watch(self._on_baselines, ["baselines"])
        view.explained.param.watch(self._on_measure, ["measure"])

    def _build(self) -> None:
        """The fidelity section: a button, a note, and the two curve plots (added on first use)."""
        self.curves: pd.DataFrame | None = None
        self._key: tuple | None = None
        self._button = pn.widgets.Button(
            label="Compute fidelity curves", color="primary", width=220
        )
        self._button.on_click(self._on_click)
        self._follow = pn.widgets.Checkbox(
            label="recompute when the selection changes", value=False, width=300
        )
        self._note = markdown(PROMPT)
        self._plots = pn.Row(sizing_mode="stretch_width")
        # One deletion and one insertion plot per measure, swapped in the panes: a live Bokeh
        # figure cannot switch its y axis between linear and log (nor flip it).
        self._maps: dict[str, list[hv.DynamicMap]] = {}
        self._caption = caption(fidelity_caption("value", quantity_label("")))
        self._coincide = caption("")
        self._csv = csv_download(self.frame, "reclens-fidelity.csv")
        self._evidence = caption("")
        self.shown = pn.Column(
            self._plots, self._caption, self._coincide, self._evidence, self._csv,
            sizing_mode="stretch_width",
            visible=False,
        )  # fmt: skip
        self._error = friendly("", "warning", visible=False, margin=5)
        self._across_users = pn.widgets.IntInput(
            label="users", value=100, start=1, end=MAX_USERS, width=100
        )
        self._across = pn.widgets.Button(label="Evaluate across users", width=200)
        self._across.on_click(self._on_across)
        self._across_bar = pn.indicators.Progress(value=0, max=100, width=200, visible=False)
        self._across_status = caption("")
        self._across_job = ""
        self._across_poll: Any = None
        self._layout = pn.Column(
            self._picker,
            pn.Row(self._button, self._follow, sizing_mode="stretch_width"),
            self._note,
            self._error,
            self.shown,
            pn.Row(self._across_users, self._across, self._across_bar, sizing_mode="stretch_width"),
            self._across_status,
            sizing_mode="stretch_width",
        )

    # -- across users: a job on the server's back end ------------------------------------------
    def _on_across(self, _: Any = None) -> None:
        """Start evaluating SPINRec and the chosen explainers on many test users of this run."""
        service, state = self.view.service, self.view.state
        context = pn.state.curdoc.session_context if pn.state.curdoc is not None else None
        try:
            job = service.fidelity_jobs.start(
                service.load(state.run), list(self.baselines), int(self._across_users.value),
                owner=context.id if context is not None else "",
            )  # fmt: skip
        except ReclensError as err:
            self._across_status.object = md("Not started: {err}", err=hide_paths(str(err)))
            return
        self._across_job = job.id
        self._across.disabled = True
        self._across_bar.param.update(value=0, visible=True)
        self._across_status.object = md(
            "Evaluating {n} users on the server's back end\u2026", n=job.n_users
        )
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._across_poll = pn.state.add_periodic_callback(self.poll_across, period=500)

    def poll_across(self) -> None:
        """Show the job's progress; when it ended, its outcome and the comparison across users."""
        job = self.view.service.fidelity_jobs.job(self._across_job)
        if job is None:
            return
        self._across_bar.value = int(round(100 * job.share_done))
        if job.status == "running":
            if job.progress is not None:
                self._across_status.object = md("Shards: {line}", line=job.progress.line())
            return
        if self._across_poll is not None:
            self._across_poll.stop()
            self._across_poll = None
        self._across.disabled = False
        self._across_bar.visible = False
        if job.status == "done":
            text = self.view.service.fidelity_evidence(job.run_id)
            self._across_status.object = md("{done}. {text}", done=job.message, text=text)
        else:
            self._across_status.object = md("Failed: {err}", err=hide_paths(job.message))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame() if self.curves is None else self.curves

    def _on_click(self, _: Any = None) -> None:
        self._button.loading = True
        try:
            with hold():
                self.compute()
        finally:
            self._button.loading = False

    def _on_baselines(self, _: Any = None) -> None:
        if self.curves is not None and self.view.state.tab == "explain":
            self.compute()  # the curves are shown: follow the chosen explainers

    def clear(self) -> None:
        """Forget the shown curves (the selection changed); they are recomputed on demand."""
        if self.curves is None and self._key is None:
            return
        self.curves, self._key = None, None
        self.shown.visible = False
        self._error.visible = False
        self._note.object = PROMPT

    def compute(self) -> pd.DataFrame | None:
        """Compute the deletion and insertion curves of SPINRec and the chosen explainers for
        the current target (cached by the engine service) and draw them."""
        start = time.perf_counter()
        try:
            if not (self.view.state.run and self.view.state.user):
                raise NothingSelected("Pick a user to compare explainers.")
            target = self.view.target()
            hist = self.view.history_indices()
            names = tuple(self.baselines)
            curves = self.view.service.fidelity(
                self.view.state.run, self.view.state.user, target, names, history=hist
            )
        except Exception as err:  # noqa: BLE001 - shown as a message in place of the curves
            if not isinstance(err, ReclensError | NothingSelected):
                log.exception("the fidelity curves failed")
            self.curves = None
            self._key = ("failed",)
            self._error.object = (
                hide_paths(str(err))
                if isinstance(err, ReclensError | NothingSelected)
                else f"The fidelity curves could not be computed ({type(err).__name__}); "
                "see the log."
            )
            self._error.visible = True
            self.shown.visible = False
            return None
        self.curves = curves
        self._key = (self.view.state.run, self.view.state.user, target, names)
        self._error.visible = False
        if not self._plots.objects:
            rev = self.param.rev
            self._maps = {
                m: [hv.DynamicMap(pn.bind(self.element, k, rev=rev, measure=m)) for k in KINDS]
                for m in MEASURES
            }
            self._plots.objects = [hv_pane(d) for d in self._maps[self.measure]]
        self.rev += 1
        self.shown.visible = True
        shown = ", ".join(["spinrec", *[n for n in names if n != "spinrec"]])
        self._note.object = md(
            "Fidelity of **{shown}** for this target ({seconds:.1f} s).",
            shown=shown,
            seconds=time.perf_counter() - start,
        )
        self._describe()
        self._evidence.object = md(
            "These curves are one user's: an illustration, not evidence. {across}",
            across=self.view.service.fidelity_evidence(self.view.state.run) or NO_EVIDENCE,
        )
        return curves

    @property
    def measure(self) -> str:
        """What the curves show: ``value`` (the model's output) or ``rank``, as the path plot."""
        return str(self.view.explained.measure)

    def _on_measure(self, _: Any = None) -> None:
        """Show the plots of the newly selected measure, with their caption and note."""
        for pane, dmap in zip(self._plots.objects, self._maps.get(self.measure, []), strict=False):
            pane.object = dmap
        if self.curves is not None:
            self._describe()

    def _describe(self) -> None:
        """The caption and the coinciding-curves note of the shown curves and measure."""
        curves = self.frame()
        known = "quantity" in curves and len(curves)
        quantity = str(curves["quantity"].iloc[0]) if known else quantity_label("")
        self._caption.object = fidelity_caption(self.measure, quantity)
        self._coincide.object = md("{note}", note=coincide_note(curves, column=self.measure))

    def element(self, kind: str, rev: int = 0, measure: str = "value") -> hv.Overlay:
        """Deletion or insertion curves of the last computed fidelity (empty before): the
        target's output under the model's link (``measure="value"``) or its rank (``"rank"``)."""
        curves = self.frame()
        if curves.empty:
            columns = ("explainer", "kind", "fraction", "value", "quantity", "rank")
            curves = pd.DataFrame({c: [] for c in columns})
        return plots.fidelity_curves(curves, kind, measure=measure).opts(framewise=True)

    def follow(self) -> None:
        """Recompute the curves when the box "recompute when the selection changes" is ticked."""
        if self._follow.value and self.curves is None and self._key is None:
            self.compute()

    def __panel__(self) -> pn.viewable.Viewable:
        """Explainer choice, the compute button and the deletion and insertion curves (shown
        once :meth:`compute` ran for the current selection)."""
        return self._layout
