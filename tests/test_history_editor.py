"""The what-if history editor: search, remove and add, on a history of any length."""

from __future__ import annotations

from types import SimpleNamespace

from app.dashboard.views.history_editor import HistoryEditor


def editor() -> HistoryEditor:
    box = HistoryEditor()
    ids = [str(i) for i in range(300)]
    box.set_catalogue(ids, [f"Film <{i}> & co" if i % 7 else f"Star {i}" for i in range(300)])
    box.value = ids[:200]
    return box


def test_the_list_holds_the_history_and_the_search_filters_it() -> None:
    box = editor()
    assert len(box._list.options) == 200
    assert "**History (training part): 200 items**" in str(box._count.object)
    box._search.value_input = "STAR"
    assert box.shown() == [str(i) for i in range(0, 200, 7)]
    assert list(box._list.options) == [f"Star {i} [{i}]" for i in range(0, 200, 7)]
    assert "29 match the search" in str(box._count.object)


def test_remove_selected_and_add_by_title() -> None:
    box = editor()
    box._search.value_input = "star"
    box._list.value = ["0", "7"]
    box._on_remove()
    assert len(box.value) == 198 and "0" not in box.value and "7" not in box.value
    box._on_add(SimpleNamespace(new="250"))
    box._on_add(SimpleNamespace(new="1"))  # already in the history: no change
    assert box.value[-1] == "250" and len(box.value) == 199
    assert box.label("250") == "Film <250> & co [250]"  # plain text: the browser draws text
