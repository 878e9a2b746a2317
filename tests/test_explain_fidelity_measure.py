"""The Explain tab's fidelity curves follow the path plot's measure selector (the model's output
or the target's rank), and their ranks are the sentence's and the top-K's, on the small
synthetic runs of :mod:`test_dashboard_views`."""

from __future__ import annotations

from pathlib import Path

import holoviews as hv
import pytest
from test_dashboard_views import DATA, build_runs, run_of, two_users

from app.dashboard.app import Page, load_extensions
from app.dashboard.engine_service import EngineService
from app.dashboard.shaping import RANK_LABEL


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> EngineService:
    runs: Path = build_runs(tmp_path_factory.getbasetemp() / "reclens_dashboard")
    load_extensions()
    return EngineService(runs, data_options=DATA, projection_method="pca")


def shown(dash: Page) -> list[hv.Overlay]:
    """The deletion and insertion overlays the fidelity panes show now."""
    return [pane.object[()] for pane in dash.view("explain").fidelity._plots.objects]


def test_fidelity_plots_switch_between_output_and_rank(service: EngineService) -> None:
    run = run_of(service, "ease")
    dash = Page(service, {"run": run, "user": two_users(service, run)[0], "tab": "explain"})
    view = dash.view("explain")
    view.explained.__panel__()
    section = view.fidelity
    curves = section.compute()
    assert curves is not None
    assert [o.opts.get().kwargs["ylabel"] for o in shown(dash)] == ["score", "score"]
    assert "the target's score (the model's own output" in section._caption.object
    view.explained.measure = "rank"  # the path plot's selector
    assert [p.object for p in section._plots.objects] == section._maps["rank"]
    for overlay in shown(dash):
        options = overlay.opts.get().kwargs
        assert options["ylabel"] == RANK_LABEL
        assert options["logy"] and options["invert_yaxis"]  # log axis, rank 1 at the top
        drawn = [e for e in overlay if isinstance(e, hv.Curve)]
        assert drawn and all(e.vdims[0].name == "rank" for e in drawn)
    text = section._caption.object
    assert "the target's rank (1 = top, comparable across models)" in text
    assert "score" not in text
    view.explained.measure = "value"
    assert [p.object for p in section._plots.objects] == section._maps["value"]
    assert shown(dash)[0].opts.get().kwargs["ylabel"] == "score"


def test_fidelity_ranks_agree_with_the_sentence_and_the_top_k(service: EngineService) -> None:
    run = run_of(service, "ease")
    user = two_users(service, run)[0]
    loaded = service.load(run)
    assert loaded.opened.validation(loaded.user_index(user)).size  # some items are left out
    recs = service.recommend(run, user, 30)
    for position in (0, 24):
        item = str(recs["id"].iloc[position])
        exp = service.explain(run, user, item)
        curves = service.fidelity(run, user, item, ("random",))
        spin = curves[curves["explainer"] == "spinrec"].set_index(["kind", "fraction"])["rank"]
        # nothing removed / everything kept: the user's own history, ranked as the top-K
        assert spin[("deletion", 0.0)] == exp.rank == position + 1
        assert spin[("insertion", 1.0)] == exp.rank
