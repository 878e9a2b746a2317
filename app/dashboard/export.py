"""Export the selected user's views to one standalone HTML file (works offline: every script,
stylesheet and image is inside the file; opening it makes no request)."""

from __future__ import annotations

import base64
import html
import io
import logging
import mimetypes
import re
import tempfile
from pathlib import Path
from typing import Any

import holoviews as hv
import panel as pn
from bokeh.resources import INLINE
from panel.io.resources import CDN_DIST, DIST_DIR, LOCAL_DIST

from app.dashboard.engine_service import EngineService
from app.dashboard.plots import diffusion as diffusion_plots
from app.dashboard.plots import explain as explain_plots
from app.dashboard.plots.explainer_style import coincide_note
from app.dashboard.sentence import explanation_sentence
from app.dashboard.shaping import choose_target
from app.dashboard.state import Selection
from app.dashboard.views import diffusion as diffusion_view
from app.dashboard.views.common import friendly, hide_paths, markdown, md
from data.errors import ReclensError
from engine.trajectory import motion

log = logging.getLogger("reclens.dashboard")


def export_views(service: EngineService, state: Selection) -> pn.Column:
    """Static views of the selected user: recommendations, explanation, paths, fidelity and,
    for a DiffRec run, the reverse process as a HoloMap with a Player."""
    run, user, k = state.run, state.user, state.k
    loaded = service.load(run)
    loaded.user_index(user)
    recs = service.recommend(run, user, k)
    titles = dict(zip(loaded.items["id"], loaded.items["title"], strict=True))
    asked = state.item if state.item in titles else ""  # an unknown id: the top-1, as before
    seen = set(service.history_table(run, user)["id"])
    choice = choose_target(asked, seen, recs["id"].astype(str).tolist())
    item = choice.item
    exp = service.explain(run, user, item)
    sentence = explanation_sentence(
        exp.attributions,
        exp.target,
        f"user {user}",
        rank=exp.rank,
        k=k,
        candidates=exp.candidates,
        model=loaded.model_name,
        quantity=exp.quantity,
        value=exp.probability,
        asked_in_history=titles.get(choice.asked_in_history, ""),
    )
    parts: list[Any] = [
        markdown(
            md(
                "# RecLens \u2014 user {user}\nRun {run} ({model}) on {dataset}, top-{k}.",
                user=user,
                run=run,
                model=loaded.model_name,
                dataset=loaded.dataset.name,
                k=k,
            )
        ),
        markdown(md("## Recommendations")),
        pn.pane.DataFrame(
            recs[["rank", "title", "genres", "score", "heldout"]],
            index=False,
            sizing_mode="stretch_width",
        ),
        markdown(md("## Why \u201c{target}\u201d?", target=exp.target)),
        friendly(sentence, "success"),
        pn.pane.HoloViews(
            explain_plots.attribution_bars(exp.attributions, top=20), sizing_mode="stretch_width"
        ),
        pn.pane.HoloViews(
            explain_plots.path_curves(
                exp.alphas,
                exp.paths,
                exp.chosen,
                exp.path_labels,
                ylabel=f"the target's {exp.quantity}",
            ),
            sizing_mode="stretch_width",
        ),
    ]
    try:
        curves = service.fidelity(run, user, item, ("ig_zero", "cosine", "random"))
        parts.append(
            pn.Row(
                pn.pane.HoloViews(explain_plots.fidelity_curves(curves, "deletion")),
                pn.pane.HoloViews(explain_plots.fidelity_curves(curves, "insertion")),
                sizing_mode="stretch_width",
            )
        )
        parts.append(markdown(md("{note}", note=coincide_note(curves))))
    except ReclensError as err:
        parts.append(markdown(md("*Fidelity curves unavailable: {err}*", err=hide_paths(str(err)))))
    parts += diffusion_section(service, state)
    return pn.Column(*parts, sizing_mode="stretch_width")


def diffusion_holomap(service: EngineService, state: Selection) -> hv.HoloMap | None:
    """The DiffRec reverse process of the selected user as a HoloMap over the Player's steps
    (or None when the run is not a diffrec run), as the Diffusion tab shows it by default
    (the history noised to the model's T, a fan of three walks): per step the heat strip, the
    top-K table, the metric curves and the map position, each frame titled "Step s of S"."""
    if not service.load(state.run).opened.is_diffusion:
        return None
    try:
        steps = diffusion_view.model_steps(service, state.run)
        traj = service.trajectory(state.run, state.user, state.k, 3, steps)
    except ReclensError as err:
        log.info("no trajectory to export: %s", err)
        return None
    progress = traj.progress().to_pandas()
    heat = diffusion_view.heat_element(service, state.run, traj)
    curves = diffusion_plots.metric_curves(progress, state.k)
    where = diffusion_view.map_element(service, state.run, traj)
    frames = {}
    for s in range(traj.n_steps + 1):
        top = diffusion_view.topk_table(service, state.run, traj, s)
        table = diffusion_plots.topk_bars(top, f"Top-{state.k} at this step (green: held out)")
        panels = (
            (heat * diffusion_plots.step_line(s)).opts(
                title=diffusion_view.step_label(traj, s), legend_position="right"
            ),
            table,
            curves * diffusion_plots.step_marker(s),
            where * diffusion_plots.trajectory_position(progress, s),
        )
        # fixed sizes (a responsive plot inside a layout shrinks), and no shared axes: the
        # strip's inverted step axis is not the curves' step axis
        sized = [p.opts(responsive=False, width=640, height=360) for p in panels]
        frames[s] = hv.Layout(sized).opts(shared_axes=False).cols(2)
    return hv.HoloMap(frames, kdims="step")


def diffusion_section(service: EngineService, state: Selection) -> list[Any]:
    """The exported Diffusion part: a note on the walk and its frames with a Player."""
    holomap = diffusion_holomap(service, state)
    if holomap is None:
        return []
    traj = service.trajectory(
        state.run, state.user, state.k, 3, diffusion_view.model_steps(service, state.run)
    )
    return [
        markdown(md("## Diffusion reverse process")),
        friendly(diffusion_view.motion_words(motion(traj), traj.k), "info"),
        pn.panel(
            holomap.collate(),
            widgets={"step": pn.widgets.Player(
                label="Reverse step (0 = start)", start=0, end=traj.n_steps, value=0,
                interval=900, loop_policy="once", show_loop_controls=False,
            )},
            widget_location="top",
            sizing_mode="stretch_width",
        ),
    ]  # fmt: skip


def export_html(service: EngineService, state: Selection) -> io.BytesIO:
    """The standalone HTML file of :func:`export_views` (inline resources, embedded states)."""
    view = export_views(service, state)
    with tempfile.TemporaryDirectory(prefix="reclens-export-") as tmp:
        path = Path(tmp) / "export.html"
        view.save(str(path), resources=INLINE, embed=True, title=f"RecLens user {state.user}")
        text = path.read_text(encoding="utf-8")
    return io.BytesIO(standalone(text).encode("utf-8"))


_PANEL_FILE = re.compile(
    rf"(?:{re.escape(CDN_DIST)}|(?<=[\"'])\.?/?{re.escape(LOCAL_DIST)})"
    r"([\w@./+-]+?)(?:\?v=[\w.]+)?(?=[\"'\\\s)])"
)


def standalone(page: str) -> str:
    """``page`` with every link to a file of Panel (on its CDN, or on the server that made the
    page: component stylesheets, the design's scripts, icons) replaced by a ``data:`` URL of
    the same file from the installed Panel, so the file needs no network. Bokeh's own scripts
    are already inline."""

    def inline(match: re.Match[str]) -> str:
        url = _data_url(DIST_DIR / match.group(1))
        return url if url is not None else match.group(0)

    return _PANEL_FILE.sub(inline, page)


_RELATIVE_IMPORT = re.compile(r"""(\b(?:from|import)\s*\(?\s*)(["'])(\.{1,2}/[^"'\s]+)\2""")


def _data_url(path: Path, importers: frozenset[Path] = frozenset()) -> str | None:
    """A ``data:`` URL of the installed Panel file ``path`` (None outside Panel's files). A
    JavaScript module's relative imports become ``data:`` URLs too: a module loaded from a
    ``data:`` URL cannot resolve a relative path (the Fast design's script imports its
    components so, and the page stayed blank offline); ``importers``: the modules importing
    this one (an import cycle is left as it is)."""
    path = path.resolve()
    root = DIST_DIR.resolve()
    if not path.is_file() or root not in path.parents or path in importers:
        return None
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    data = path.read_bytes()
    if path.suffix in (".js", ".mjs"):

        def imported(match: re.Match[str]) -> str:
            url = _data_url(path.parent / match.group(3), importers | {path})
            return (
                match.group(0)
                if url is None
                else f"{match.group(1)}{match.group(2)}{url}{match.group(2)}"
            )

        data = _RELATIVE_IMPORT.sub(imported, data.decode("utf-8")).encode("utf-8")
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def export_button(service: EngineService, state: Selection) -> pn.widgets.FileDownload:
    """The sidebar's Export button: downloads the current user's views as HTML."""

    def make() -> io.BytesIO:
        try:
            return export_html(service, state)
        except Exception as err:  # noqa: BLE001 - a failed export must not break the page
            log.exception("export failed")
            message = (
                f"<p>RecLens could not export this view: {html.escape(hide_paths(str(err)))}</p>"
            )
            return io.BytesIO(message.encode("utf-8"))

    button = pn.widgets.FileDownload(
        callback=make,
        filename="reclens-export.html",
        label="\u2b07 Export this user's views (HTML)",
        color="primary",
    )

    def rename(*_: Any) -> None:
        button.filename = f"reclens-user-{state.user or 'none'}.html"

    state.param.watch(rename, ["user"])
    rename()
    return button
