"""The Explain tab's explanation: the sentence, SPINRec attribution bars, the chosen baseline
and the path curves, built once and updated in place when the selection changes.

The path curves show the model's own output for the target (named for what it is: a softmax or
sigmoid probability, or a score) or, comparable across models, the target's rank."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from app.dashboard.plots import explain as plots
from app.dashboard.sentence import explanation_sentence
from app.dashboard.shaping import RANK_LABEL, ExplanationView, path_rank_curves
from app.dashboard.views.common import (
    caption,
    csv_download,
    friendly,
    hide_paths,
    hv_pane,
    markdown,
    md,
)
from app.dashboard.views.explain_fidelity import NothingSelected
from data.errors import ReclensError

if TYPE_CHECKING:
    from app.dashboard.views.explain import ExplainView

log = logging.getLogger("reclens.dashboard")


class ExplanationSection(pn.viewable.Viewer):
    """Sentence, attribution bars, baseline choice and path curves of the current target."""

    top = param.Integer(default=15, bounds=(3, 60), doc="Bars shown.")
    rev = param.Integer(default=0, doc="Bumped when a new explanation is pushed.")
    measure = param.Selector(
        default="value", objects=["value", "rank"], doc="What the path curves show."
    )

    def __init__(self, view: ExplainView, **params: Any) -> None:
        super().__init__(**params)
        self.view = view
        self._build()
        self.layout = self._layout()

    def _build(self) -> None:
        """The explanation's components, built once; :meth:`refresh` fills them."""
        self._exp: ExplanationView | None = None
        self._ranks: tuple[ExplanationView, np.ndarray] | None = None  # made on demand
        self._sentence = friendly(
            "", "success", css_classes=["reclens-sentence"], visible=False, margin=5
        )
        self._exp_error = friendly("", "warning", visible=False, margin=5)
        self._baseline_md = markdown()
        self._measure = pn.widgets.RadioButtonGroup(
            options={"the model's output": "value", "rank (comparable across models)": "rank"},
            value=self.measure,
            color="light",
        )
        self._measure.link(self, value="measure")
        # A few rows: a plain HTML table draws much faster than a Tabulator.
        self._alternatives = pn.pane.DataFrame(
            pd.DataFrame(), index=False, sizing_mode="stretch_width", height=250,
            styles={"overflow-y": "auto"},
        )  # fmt: skip
        rev = self.param.rev
        self._bars = hv.DynamicMap(pn.bind(self.bars_element, rev=rev, top=self.param.top))
        # One plot per measure, swapped in the pane: a live Bokeh figure cannot switch its y
        # axis between linear and log (nor flip it), so a rank view needs its own figure.
        self._paths = {
            m: hv.DynamicMap(pn.bind(self.paths_element, rev=rev, measure=m))
            for m in ("value", "rank")
        }
        self._paths_pane = hv_pane(self._paths[self.measure])
        self.param.watch(self._on_measure, ["measure"])

    def refresh(self, *_: Any) -> None:
        """Recompute the explanation (cached by the engine service per run, user, item and
        history) and push it into the persistent plots when it changed."""
        self.view._pending.discard("explanation")
        start = time.perf_counter()
        try:
            if not (self.view.state.run and self.view.state.user):
                raise NothingSelected("Pick a user and a recommended item to explain it.")
            choice = self.view.target_choice()
            exp = self.view.explanation()
            loaded = self.view.service.load(self.view.state.run)
            asked = choice.asked_in_history
            asked_title = str(loaded.items["title"].iloc[loaded.item_index(asked)]) if asked else ""
        except Exception as err:  # noqa: BLE001 - shown as a message above the plots
            self._exp = None
            if not isinstance(err, ReclensError | NothingSelected):
                log.exception("the explanation failed")
            self._exp_error.object = (
                hide_paths(str(err))
                if isinstance(err, ReclensError | NothingSelected)
                else (f"The explanation could not be computed ({type(err).__name__}); see the log.")
            )
            self._exp_error.visible = True
            self._sentence.visible = False
            self.rev += 1
            return
        self._exp_error.visible = False
        sentence = explanation_sentence(
            exp.attributions,
            exp.target,
            f"user {self.view.state.user}",
            rank=exp.rank,
            k=self.view.state.k,
            candidates=exp.candidates,
            model=loaded.model_name,
            quantity=exp.quantity,
            value=exp.probability,
            asked_in_history=asked_title,
        )
        self._sentence.param.update(object=sentence, visible=True)
        if exp is self._exp:
            return  # the same explanation (e.g. only K changed): nothing to redraw
        self._exp = exp
        self._baseline_md.object = md(
            "**Chosen baseline:** user {baseline} \u00b7 the target's {quantity} {p:.4g} "
            "(rank {rank})",
            baseline=exp.baseline,
            quantity=exp.quantity,
            p=exp.probability,
            rank=exp.rank,
        )
        alt = exp.alternatives.copy()
        alt["deletion AUC"] = alt["deletion AUC"].round(5)
        self._alternatives.object = alt
        self.rev += 1
        log.debug("ExplanationSection.refresh took %.3f s", time.perf_counter() - start)

    def _on_measure(self, _: Any = None) -> None:
        self._paths_pane.object = self._paths[self.measure]

    def bars_element(self, rev: int = 0, top: int = 15) -> hv.Bars:
        """Attribution bars of the current explanation (empty without one)."""
        if self._exp is None:
            return hv.Bars([], "label", "attribution").opts(responsive=True, height=440)
        exp = self._exp
        bars = plots.attribution_bars(
            exp.attributions, top=top, title=f"Why \u201c{exp.target}\u201d?"
        )
        return bars.opts(height=440, framewise=True)

    def paths_element(self, rev: int = 0, measure: str = "value") -> hv.Overlay:
        """SPINRec path curves of the current explanation (empty without one): the target's
        output under the model's link (``measure="value"``) or its rank (``"rank"``)."""
        exp = self._exp
        if exp is None:
            return hv.Overlay([hv.Curve([], "alpha", "value")])
        ranks = measure == "rank"
        paths = plots.path_curves(
            exp.alphas,
            self._path_ranks(exp) if ranks else exp.paths,
            exp.chosen,
            exp.path_labels,
            ylabel=RANK_LABEL if ranks else f"the target's {exp.quantity}",
            ranks=ranks,
        )
        return paths.opts(framewise=True)

    def _path_ranks(self, exp: ExplanationView) -> np.ndarray:
        """The target's rank along the paths of ``exp`` (computed once, when first shown)."""
        if self._ranks is None or self._ranks[0] is not exp:
            loaded = self.view.service.load(self.view.state.run)
            self._ranks = (exp, path_rank_curves(loaded, exp))
        return self._ranks[1]

    def __panel__(self) -> pn.viewable.Viewable:
        """Sentence, attribution bars, baseline choice and path curves (updated in place)."""
        if self._exp is None or "explanation" in self.view._pending:
            self.refresh()
        return self.layout

    def _layout(self) -> pn.Column:
        return pn.Column(
            self._exp_error,
            self._sentence,
            pn.Row(
                pn.Column(
                    hv_pane(self._bars),
                    caption(
                        "SPINRec attribution of each history item to the target's output (its "
                        "probability or score, as the model defines it): green bars pushed the "
                        "recommendation up, red ones down; longest first."
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
            pn.Row(markdown(md("**Path curves show**")), self._measure),
            self._paths_pane,
            caption(
                "The target's output along each path from a baseline user's history (alpha 0) "
                "to this user's history (alpha 1), in the model's own units (a softmax or "
                "sigmoid probability, or a score: not comparable across models), or its rank "
                "among the items the top-K ranks (outside the history; 1 = top, comparable "
                "across models); the chosen path is drawn thick in orange."
            ),
            sizing_mode="stretch_width",
        )

    def _attributions(self) -> pd.DataFrame:
        return pd.DataFrame() if self._exp is None else self._exp.attributions
