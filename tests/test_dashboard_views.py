"""Dashboard views and the engine service on a small synthetic run folder.

A tiny ease, fism and diffrec are trained once per test session into a temporary runs folder;
each view is instantiated around them and the tests check that changing the selected user,
item, K (or the view's own controls) changes what is plotted.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import pytest

from app.dashboard import teaching
from app.dashboard.app import Page, load_extensions
from app.dashboard.engine_service import DashboardError, EngineService
from data.errors import ReclensError

DATA = {"n_users": 200, "n_items": 150, "n_interactions": 4000}
MODELS = ("ease", "fism", "diffrec")


def build_runs(root: Path) -> Path:
    """Train the tiny models into ``root`` once (reused by every dashboard test module)."""
    from engine import registry
    from engine.pipeline import train_run

    runs = root / "runs"
    if not (runs / ".ready").exists():
        available = set(registry.available_models())
        for name in MODELS:
            if name in available:
                train_run("synthetic", name, device="cpu", epochs=2, out=runs, load_options=DATA)
        (runs / ".ready").write_text("ok")
    return runs


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    """One torch thread, as the dashboard server uses (fast on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_runs(tmp_path_factory.getbasetemp() / "reclens_dashboard")


@pytest.fixture(scope="module")
def service(runs_dir: Path) -> EngineService:
    load_extensions()
    return EngineService(runs_dir, data_options=DATA, projection_method="pca")


def run_of(service: EngineService, model: str) -> str:
    return next(r for r, s in zip(service.run_ids(), service.summaries(), strict=True)
                if s.model == model)  # fmt: skip


@pytest.fixture()
def dash(service: EngineService) -> Page:
    return Page(service, {"run": run_of(service, "ease"), "user": "1"})


def two_users(service: EngineService, run: str) -> tuple[str, str]:
    loaded = service.load(run)
    users = loaded.split.eval_users("test")
    return tuple(str(loaded.users["id"].iloc[int(u)]) for u in users[:2])  # type: ignore[return-value]


def hv_objects(panel) -> list:
    """Every HoloViews object inside a Panel layout (depth first)."""
    found = []
    stack = [panel]
    while stack:
        obj = stack.pop()
        if hasattr(obj, "object") and isinstance(obj.object, hv.core.Dimensioned):
            found.append(obj.object)
        stack.extend(getattr(obj, "objects", []) or [])
    return found


# -- service ---------------------------------------------------------------------------------
def test_service_lists_and_validates_runs(service: EngineService) -> None:
    ids = service.run_ids()
    assert len(ids) >= 2 and all(i.startswith("synthetic/") for i in ids)
    for bad in ("../../etc", "/etc/passwd", "synthetic/../..", ""):
        with pytest.raises(DashboardError, match="not in the runs folder"):
            service.load(bad)
    board = service.leaderboard()
    assert set(board["run"]) == set(ids)
    assert "ndcg@10" in board.columns


def test_recommend_follows_k_and_whatif_history(service: EngineService) -> None:
    run = run_of(service, "ease")
    user = two_users(service, run)[0]
    top5 = service.recommend(run, user, 5)
    top10 = service.recommend(run, user, 10)
    assert len(top5) == 5 and len(top10) == 10
    assert top10["id"].tolist()[:5] == top5["id"].tolist()
    hist = service.history_table(run, user)
    assert not set(top10["item"]) & set(hist["item"])
    edited = service.recommend(run, user, 10, history=hist["item"].to_numpy()[: len(hist) // 2])
    assert edited["id"].tolist() != top10["id"].tolist()
    with pytest.raises(ReclensError, match="not in dataset"):
        service.recommend(run, "no-such-user", 5)


def test_explanation_covers_history(service: EngineService) -> None:
    run = run_of(service, "ease")
    user = two_users(service, run)[0]
    item = service.recommend(run, user, 3)["id"].iloc[0]
    exp = service.explain(run, user, item)
    hist = service.history_table(run, user)
    assert sorted(exp.attributions["id"]) == sorted(hist["id"])
    assert exp.paths.shape == (len(exp.path_labels), exp.alphas.shape[0])
    assert 0 <= exp.chosen < exp.paths.shape[0]
    curves = service.fidelity(run, user, item, ("random",))
    assert set(curves["explainer"]) == {"spinrec", "random"}
    assert set(curves["kind"]) == {"deletion", "insertion"}


def test_training_job_runs_in_background_and_can_be_cancelled(
    tmp_path: Path, service: EngineService
) -> None:
    local = EngineService(tmp_path / "runs", data_options=DATA)
    job = local.start_training("synthetic", "ease")
    assert job.thread is not None
    job.thread.join(timeout=120)
    assert job.status == "done", job.message
    assert job.run_id in local.run_ids()
    slow = local.start_training("synthetic", "fism", epochs=1000, train_options={"patience": 0})
    deadline = time.time() + 60
    while not slow.reports and time.time() < deadline:
        time.sleep(0.2)
    slow.cancel.set()
    slow.thread.join(timeout=120)
    assert slow.status == "cancelled"
    assert len(local.run_ids()) == 1


# -- page ------------------------------------------------------------------------------------
def test_page_restores_url_and_reports_bad_input(service: EngineService) -> None:
    run = run_of(service, "fism")
    dash = Page(service, {"run": run, "user": "3", "tab": "explain", "item": "7"})
    assert (dash.state.run, dash.state.user, dash.state.item) == (run, "3", "7")
    assert dash.tabs.active == 2 and dash.state.message == ""
    unknown = Page(service, {"user": "999999"})
    assert "999999" in unknown.state.message and "pick a user" in unknown.state.message
    missing = Page(service, {"run": "synthetic/nope", "tab": "bogus"})
    assert "synthetic/nope" in missing.state.message
    assert missing.state.run in service.run_ids() and missing.state.tab == "overview"
    empty = Page(EngineService(Path("/nonexistent/reclens-runs")), {})
    assert "reclens demo" in empty.state.message
    dash.template()  # builds without error
    dash.dispose()
    assert not dash.views


def test_tab_selection_is_two_way_and_builds_tabs_when_shown(dash: Page) -> None:
    assert set(dash.views) == {"overview"}  # only the shown tab is built
    dash.state.tab = "fairness"
    assert dash.tabs.active == 4
    dash.tabs.active = 1
    assert dash.state.tab == "embeddings"
    assert set(dash.views) == {"overview", "fairness", "embeddings"}
    assert len(dash.tabs[1].objects) == 1 and not dash.tabs[2].objects  # shown, never shown


# -- views -----------------------------------------------------------------------------------
def test_overview_scatter_follows_metrics(dash: Page) -> None:
    view = dash.view("overview")
    first = view.tradeoff().object
    view.x_metric = "recall@20"
    second = view.tradeoff().object
    assert first.Points.I.kdims[0].name != second.Points.I.kdims[0].name
    card = view.dataset_card()
    plots = hv_objects(card)
    assert len(plots) == 2
    hist = next(p for p in plots if isinstance(p, hv.Histogram))
    assert sum(hist.dimension_values("users")) == 200


def test_leaderboard_compares_runs_with_the_selected_one(dash: Page, service) -> None:
    import scipy.stats

    from engine.runs import PER_USER, read_table

    view = dash.view("overview")
    column = "vs selected run (ndcg@10, paired, Holm)"
    board = view.board().set_index("run")
    selected = dash.state.run
    assert board.loc[selected, column] == "selected run"
    others = [r for r in board.index if r != selected]
    verdicts = service.catalogue.versus(selected)
    assert set(verdicts) == set(others)  # every run here shares the split

    def per_user(run: str):
        table = read_table(service.summary(run).path, PER_USER).sort("user")
        return table["ndcg@10"].to_numpy()

    raw = [scipy.stats.ttest_rel(per_user(r), per_user(selected)).pvalue for r in others]
    for run, p in zip(others, raw, strict=True):
        text = board.loc[run, column]
        holm = min(1.0, p * len(others)) if p == min(raw) else None
        assert text.startswith(("higher", "lower", "no significant difference"))
        if holm is not None:
            assert f"p_holm {holm:.2g}" in text
    dash.state.run = others[0]  # the column follows the selection
    assert view._table.value.set_index("run").loc[others[0], column] == "selected run"


def test_embeddings_highlights_follow_user_and_item(dash: Page, service: EngineService) -> None:
    view = dash.view("embeddings")
    run = dash.state.run
    a, b = two_users(service, run)
    first = view.item_highlights(run, a, 10, "")
    second = view.item_highlights(run, b, 10, "")
    assert list(first)[0].data["id"].tolist() != list(second)[0].data["id"].tolist()
    assert len(list(view.item_highlights(run, a, 5, ""))[2].data) == 5
    assert len(list(first)[2].data) == 10
    chosen = view.item_highlights(run, a, 10, "4")
    assert list(chosen)[3].data["id"].tolist() == ["4"]
    genre = view.item_points(run, "genre")
    pop = view.item_points(run, "popularity")
    assert genre.opts.get().kwargs["color"] == "genre"
    assert pop.opts.get().kwargs["color"] == "popularity"
    assert isinstance(view.maps(), object)
    frame = view.user_frame()
    view._on_user_tap(float(frame["x"].iloc[5]), float(frame["y"].iloc[5]))
    assert dash.state.user == str(frame["id"].iloc[5])
    dash.state.item = "4"
    table = view.neighbours_panel()[1].value
    assert "4" not in table["id"].tolist() and len(table) == 10


def test_explain_follows_user_item_and_k(dash: Page, service: EngineService) -> None:
    view = dash.view("explain")
    a, b = two_users(service, dash.state.run)
    dash.state.user = a
    bars_a = view.explanation().attributions
    dash.state.user = b
    bars_b = view.explanation().attributions
    assert bars_a["id"].tolist() != bars_b["id"].tolist()
    view.explained.__panel__()  # pushes the explanation into the persistent plots
    bars = view.explained.bars_element(top=5)
    assert isinstance(bars, hv.Bars) and len(bars.data) == min(5, len(bars_b))
    assert set(bars.data["id"]) <= set(bars_b["id"])
    others, best = list(view.explained.paths_element())
    assert len(others.split()) + 1 == len(view.explained._exp.path_labels)
    assert "user " + b in view.explained._sentence.object
    dash.state.k = 5
    view.recs_panel()
    assert len(view._recs_table.value) == 5
    dash.state.k = 12
    view.recs_panel()
    assert len(view._recs_table.value) == 12
    second = view.recommendations()["id"].iloc[1]
    first_target = view.target()
    dash.state.item = second
    assert view.target() == second != first_target
    hist_item = service.history_table(dash.state.run, b)["id"].iloc[0]
    dash.state.item = hist_item  # an item of the history is not recommendable: top-1 instead
    assert view.target() == view.recommendations()["id"].iloc[0]
    assert view.fidelity.curves is None  # fidelity is computed on demand, not on every switch
    curves = view.fidelity.compute()
    assert curves is not None
    assert set(curves["explainer"]) == {"spinrec", *view.fidelity.baselines}
    fid = view.fidelity.__panel__()
    assert len(hv_objects(fid)) >= 2
    deletion = view.fidelity.element("deletion")
    drawn = {e.label for e in deletion if isinstance(e, hv.Curve)}  # a line and markers each
    assert drawn == set(curves["explainer"])
    dash.state.user = a  # a new selection clears the curves until they are asked for again
    assert view.fidelity.curves is None and not view.fidelity.shown.visible


def test_explain_whatif_recomputes(dash: Page, service: EngineService) -> None:
    view = dash.view("explain")
    dash.state.user = two_users(service, dash.state.run)[0]
    before = view.recommendations()["id"].tolist()
    view.whatif = True
    assert view.edited == service.history_table(dash.state.run, dash.state.user)["id"].tolist()
    view.edited = view.edited[: max(1, len(view.edited) // 3)]
    after = view.recommendations()["id"].tolist()
    assert after != before
    view.recs_panel()
    assert "change" in view._recs_table.value.columns
    exp = view.explanation()
    assert sorted(exp.attributions["id"]) == sorted(view.edited)


def test_compare_runs_side_by_side(dash: Page, service: EngineService) -> None:
    view = dash.view("explain")
    assert isinstance(view.compare_panel(), object)
    dash.state.compare = [run_of(service, "fism")]
    table = view.compare_panel()[1].value
    assert table.shape[1] == 4  # rank, two runs, overlap
    assert len(table) == dash.state.k


def test_fairness_follows_user_and_k(dash: Page, service: EngineService) -> None:
    view = dash.view("fairness")
    a, b = two_users(service, dash.state.run)
    dash.state.user = a
    # the histograms are drawn once; the user's markers follow the selection in place
    shown = [o for o in hv_objects(view.user_panel()) if isinstance(o, hv.DynamicMap)]

    def marks() -> list[tuple]:
        return [tuple(o[()].VLines.I.dimension_values(0)) for o in shown]

    va = marks()
    dash.state.user = b
    vb = marks()
    assert shown and any(va) and va != vb
    k10 = service.exposure(dash.state.run, 10)["exposure"].sum()
    dash.state.k = 5
    k5 = service.exposure(dash.state.run, 5)["exposure"].sum()
    assert k10 == 2 * k5
    exposure = hv_objects(view.exposure_panel())
    assert any("Gini" in str(o.opts.get().kwargs.get("title", "")) for o in exposure)
    view.group_by = "community"
    groups = view.group_panel()
    bars = [o for o in hv_objects(groups) if isinstance(o, hv.Bars)]
    assert bars and len(bars[0].data) == service.load(dash.state.run).users["community"].nunique()
    assert isinstance(view.per_user(), pd.DataFrame)


def test_diffusion_follows_step_and_user(
    dash: Page, service: EngineService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if "diffrec" not in {s.model for s in service.summaries()}:
        pytest.skip("diffrec is not registered")
    dash.state.run = run_of(service, "diffrec")
    view = dash.view("diffusion")
    a, b = two_users(service, dash.state.run)
    dash.state.user = a
    assert isinstance(view.trajectory_panel(), object)
    n_steps = view.trajectory().n_steps
    # by default the walk starts from the history noised to the model's T, the slider ends there
    assert view._player.end == n_steps and view.trajectory().noise_steps == n_steps
    assert (view._noise.end, view._noise.value) == (n_steps, n_steps)
    assert view._player.label == f"Step 0 of {n_steps}" and view.topk_at(0).empty
    first, last = view.topk_at(1), view.topk_at(n_steps)
    assert first["move"].eq("new").all() and not last["move"].eq("new").all()
    view.step = n_steps
    assert view._topk.value["title"].tolist() == last["title"].tolist()
    assert view._player.label == f"Step {n_steps} of {n_steps}"
    pos0 = view.position_element(0).data[["x", "y"]].to_numpy()
    pos1 = view.position_element(n_steps).data[["x", "y"]].to_numpy()
    assert not np.allclose(pos0, pos1)
    heat_a = view.heat_element(dash.state.run, a, 10, 3, n_steps, False).Image.I.data
    assert heat_a.shape[0] == n_steps + 1  # the start state, then each step
    dash.state.user = b
    heat_b = view.heat_element(dash.state.run, b, 10, 3, n_steps, False).Image.I.data
    assert heat_a.shape != heat_b.shape or not np.allclose(heat_a, heat_b)
    assert "walk starts from the history noised" in view.motion_note()
    view.fan, view.noise_steps = 4, 1
    walks = view.map_element(dash.state.run, b, 10, 4, 1, False)
    paths = [el for el in walks if isinstance(el, hv.Path)]
    assert len(paths) == 4 and len({p.opts.get().kwargs["color"] for p in paths}) == 4
    # a value above the model's T is capped, never an error replacing the section
    view.noise_steps = 50
    assert view.effective_noise() == n_steps and view._noise.end == n_steps
    assert not any(isinstance(o, pn.pane.Alert) and o.alert_type == "warning"
                   for o in view.trajectory_panel().select(pn.pane.Alert))  # fmt: skip
    monkeypatch.setattr(teaching, "TOY_ITERS", 100)
    monkeypatch.setattr(service.teaching, "folder", tmp_path)  # toy models saved there
    view.toy_steps = 5
    view.toy_body()
    assert view._toy_player.end == 5
    frames = [list(view.toy_element(f))[-1].data for f in (0, 5)]
    assert len(frames[0]) == 400 and not np.allclose(frames[0], frames[1])


def test_session_dispose_drops_caches(dash: Page) -> None:
    view = dash.view("explain")
    view.recommendations()
    assert view._cache_recs
    dash.dispose()
    assert not view._cache_recs


@pytest.mark.slow
def test_csv_export_and_html_export(dash: Page, service: EngineService) -> None:
    from app.dashboard.export import diffusion_holomap, export_html

    dash.state.run = run_of(service, "diffrec")
    holomap = diffusion_holomap(dash.service, dash.state)
    steps = service.load(dash.state.run).opened.model.steps
    assert holomap is not None and list(holomap.keys()) == list(range(steps + 1))
    frame = holomap[1]  # heat strip, top-K table, metric curves, map
    assert isinstance(frame, hv.Layout) and len(frame) == 4
    assert any(isinstance(el, hv.Bars) and len(el) == dash.state.k for el in frame)

    data = export_html(dash.service, dash.state).getvalue()
    assert b"<html" in data.lower() and b"Why" in data and len(data) > 100_000
    assert b"cdn.bokeh.org" not in data  # inline resources: works offline
    text = data.decode("utf-8")
    # no tag loads anything from the network, and no stylesheet imports from it
    assert not re.search(
        r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//", text
    )
    assert not re.search(r"@import\s+(?:url\()?[\"']?(?:https?:)?//", text)
    # the Diffusion Player (not a slider) and each step's frame
    assert "panel.models.widgets.Player" in text
    assert f"Step 1 of {steps}" in text and f"Top-{dash.state.k} at this step" in text


def test_view_arrays_are_finite(dash: Page) -> None:
    frame = dash.view("embeddings").item_frame()
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all()


def _served_page(service: EngineService, doc: object) -> Page:
    """An Explain page attached to ``doc`` the way the server attaches it (template and all)."""
    from panel.io.state import set_curdoc

    page = Page(service, {"run": run_of(service, "ease"), "tab": "explain"})
    with set_curdoc(doc):
        page.template().server_doc(doc, title="RecLens")
    return page


def test_updates_keep_the_page_design(service: EngineService) -> None:
    """A pane redrawn after the page is served keeps its stylesheets: a change there makes the
    browser restyle every pane and made the first user switch three times slower."""
    from bokeh.document import Document

    doc = Document()
    page = _served_page(service, doc)
    pane = page.view("explain")._history_md
    model = next(iter(pane._models.values()))[0]  # one model, listed under each root
    before = [getattr(s, "url", s) for s in model.stylesheets]
    page.state.user = two_users(service, page.state.run)[1]
    assert page.view("explain")._history_md.object.startswith(
        f"**History of user {page.state.user}**"
    )
    assert [getattr(s, "url", s) for s in model.stylesheets] == before
    page.dispose()


def _live_pages() -> int:
    import gc

    gc.collect()
    return sum(isinstance(o, Page) for o in gc.get_objects())


@pytest.mark.slow
def test_closed_session_frees_its_page(service: EngineService) -> None:
    """A real server session (a Bokeh client instead of a browser): once it closes, nothing
    process-wide keeps its page, so the server's memory can go back down."""
    import socket

    from bokeh.client import pull_session

    from app.dashboard.server import free_port, serve

    port = free_port()
    thread = serve(
        service, port=port, threaded=True, warm=False, check_unused_sessions_milliseconds=100,
        unused_session_lifetime_milliseconds=100,
    )  # fmt: skip
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        before = _live_pages()
        session = pull_session(
            url=f"http://127.0.0.1:{port}/",
            arguments={"run": run_of(service, "ease"), "tab": "explain"},
        )
        assert any(r.name.startswith("main") for r in session.document.roots)
        assert _live_pages() == before + 1
        job = service.start_training("synthetic", "fism", epochs=500, owner=session.id)
        session.close()
        deadline = time.time() + 30
        while _live_pages() > before and time.time() < deadline:
            time.sleep(0.5)
        assert _live_pages() == before
        while job.status == "running" and time.time() < deadline + 30:
            time.sleep(0.2)
        assert job.status == "cancelled"  # the page's job ended with its page
        assert not job.run_id
    finally:
        thread.stop()


def test_fidelity_across_users_runs_as_a_job_and_feeds_the_comparison(
    dash: Page, service: EngineService
) -> None:
    view = dash.view("explain")
    section = view.fidelity
    section._across_users.value = 12
    section._on_across()
    job = service.fidelity_jobs.job(section._across_job)
    assert job is not None and job.n_users == 12
    deadline = time.time() + 120
    while job.status == "running" and time.time() < deadline:
        time.sleep(0.2)
    assert job.status == "done", job.message
    assert job.progress is not None and job.progress.done == job.progress.total > 0
    section.poll_across()
    assert "Across 12 users" in str(section._across_status.object)
    assert service.load(dash.state.run).opened.stored_fidelity()["user"].n_unique() == 12
    with pytest.raises(ReclensError, match="users must be between 1 and 1000"):
        service.fidelity_jobs.start(service.load(dash.state.run), ["random"], 5000)
