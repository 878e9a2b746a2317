"""The Explain tab's words and axes on the small synthetic runs: the target's rank agrees with
the top-K, the sentence follows the selected item and K, an item of the history is named, and
each model's output is labelled for what it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dashboard_views import DATA, build_runs, run_of, two_users

from app.dashboard.app import Page, load_extensions
from app.dashboard.engine_service import EngineService
from app.dashboard.shaping import RANK_LABEL, path_rank_curves


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> EngineService:
    runs: Path = build_runs(tmp_path_factory.getbasetemp() / "reclens_dashboard")
    load_extensions()
    return EngineService(runs, data_options=DATA, projection_method="pca")


def test_rank_agrees_with_the_top_k_and_ends_every_path(service: EngineService) -> None:
    run = run_of(service, "ease")
    user = two_users(service, run)[0]
    recs = service.recommend(run, user, 30)
    for position in (0, 24):
        exp = service.explain(run, user, str(recs["id"].iloc[position]))
        assert exp.rank == position + 1
        ranks = path_rank_curves(service.load(run), exp)
        assert ranks.shape == exp.paths.shape
        assert (ranks[:, -1] == exp.rank).all()  # every path ends at the user's own rank
        assert exp.link == "identity" and exp.quantity == "score"
    loaded = service.load(run)
    hist = loaded.history(loaded.user_index(user))
    valid = loaded.opened.validation(loaded.user_index(user))
    assert exp.candidates == loaded.opened.n_items - len(set(hist) | set(valid))
    curves = service.fidelity(run, user, str(recs["id"].iloc[0]), ("random",))
    assert set(curves["quantity"]) == {"score"} and (curves["rank"] >= 1).all()


def test_sentence_follows_item_k_and_history(service: EngineService) -> None:
    run = run_of(service, "ease")
    user = two_users(service, run)[0]
    dash = Page(service, {"run": run, "user": user, "tab": "explain"})
    view = dash.view("explain")
    view.explained.__panel__()
    assert f"is recommended to user {user} by ease at rank 1 of the top-10" in (
        view.explained._sentence.object
    )
    far = str(service.recommend(run, user, 25)["id"].iloc[-1])
    dash.state.item = far
    text = view.explained._sentence.object
    assert f"is not in user {user}'s top-10 by ease: it ranks 25th of the" in text
    assert "is recommended" not in text
    dash.state.k = 30  # the sentence follows K: now the item is in the list
    assert "at rank 25 of the top-30" in view.explained._sentence.object
    seen = service.history_table(run, user).iloc[0]
    dash.state.item = str(seen["id"])
    text = view.explained._sentence.object
    assert text.startswith(f"\u201c{seen['title']}\u201d is already in user {user}'s history")
    assert view.target() == view.recommendations()["id"].iloc[0]
    assert "the target's score" in view.explained._baseline_md.object


def test_path_plot_switches_between_output_and_rank(service: EngineService) -> None:
    run = run_of(service, "diffrec")
    user = two_users(service, run)[0]
    dash = Page(service, {"run": run, "user": user, "tab": "explain"})
    section = dash.view("explain").explained
    section.__panel__()
    value = section.paths_element()
    assert value.opts.get().kwargs["ylabel"] == "the target's score"  # diffrec: identity link
    section.measure = "rank"
    assert section._paths_pane.object is section._paths["rank"]
    rank = section.paths_element(measure="rank")
    assert rank.opts.get().kwargs["ylabel"] == RANK_LABEL
    _, chosen = list(rank)
    assert chosen.data["value"].min() >= 1 and chosen.data["value"].iloc[-1] == section._exp.rank


def test_export_explains_the_asked_item_and_names_a_history_one(service: EngineService) -> None:
    from app.dashboard.export import export_views
    from app.dashboard.state import Selection

    run = run_of(service, "ease")
    user = two_users(service, run)[0]
    far = str(service.recommend(run, user, 25)["id"].iloc[-1])
    seen = service.history_table(run, user).iloc[0]

    def sentence(item: str) -> str:
        view = export_views(service, Selection(run=run, user=user, k=10, item=item))
        texts = [str(getattr(p, "object", "")) for p in view.objects]
        return next(t for t in texts if f"user {user}" in t and "\u201d" in t)

    assert f"is not in user {user}'s top-10 by ease: it ranks 25th" in sentence(far)
    assert sentence(str(seen["id"])).startswith(f"\u201c{seen['title']}\u201d is already in")
    assert "at rank 1 of the top-10" in sentence("no-such-item")  # unknown: the top-1
