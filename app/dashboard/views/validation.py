"""The selected run's validation curve: how its saved epoch was chosen (Overview tab)."""

from __future__ import annotations

import panel as pn

from app.dashboard.engine_service import EngineService
from app.dashboard.plots import overview as plots
from app.dashboard.views.common import caption, friendly, hv_pane, markdown, md, no_selection
from engine.metric_labels import metric_label


def validation_panel(service: EngineService, run: str) -> pn.viewable.Viewable:
    """Validation metric per evaluated epoch of ``run`` with the kept epoch marked, or a note
    for a closed-form fit or a run without a curve."""
    if not run:
        return no_selection("Pick or train a run to see how its epoch was chosen.")
    curve = service.catalogue.validation_curve(run)
    model = service.summary(run).model
    metric = metric_label(curve.metric)
    heading = markdown(md("**Validation curve of {model}** ({run})", model=model, run=run))
    if curve.epochs_run == 0:
        return pn.Column(
            heading,
            friendly(
                md(
                    "{model} is fitted in closed form: no epochs to choose from "
                    "(validation {metric} {value}).",
                    model=model,
                    metric=metric,
                    value=_rounded(curve.values[-1] if curve.values else None),
                ),
                "info",
            ),
        )
    if not curve.epochs:
        return pn.Column(
            heading,
            friendly(
                md(
                    "This run has no validation curve (no validation users, or a run "
                    "saved before curves were recorded); it kept epoch {kept}.",
                    kept=curve.kept,
                ),
                "info",
            ),
        )
    stop = (
        "stopped early (patience or time budget)"
        if curve.stopped_early
        else "ran every planned epoch"
    )
    return pn.Column(
        heading,
        hv_pane(plots.validation_curve(curve.epochs, curve.values, curve.kept_epoch, metric)),
        caption(
            md(
                "Validation {metric} at each evaluated epoch; the star is the epoch whose "
                "weights the run kept: epoch {kept} ({planned} planned, {stop}).",
                metric=metric,
                kept=curve.kept,
                planned=curve.planned or curve.epochs_run,
                stop=stop,
            )
        ),
        sizing_mode="stretch_width",
    )


def _rounded(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4f}"
