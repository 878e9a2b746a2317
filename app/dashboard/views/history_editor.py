"""The what-if editor of a user's history: a searchable, scrolling list of a bounded height.

A history of hundreds of items stays one list of fixed height (no chip per item): a search box
filters it by title, selected rows are removed with one button, and an autocomplete box adds
any catalogue item by typing part of its title. Option labels are plain text in the browser
(Bokeh draws ``<option>`` and completion rows as text nodes), so titles need no escaping here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import panel as pn
import param

from app.dashboard.views.common import caption, markdown, md

LIST_HEIGHT = 260
"""Pixels of the history list (it scrolls beyond that)."""


class HistoryEditor(pn.viewable.Viewer):
    """Edits ``value``, the raw ids of the history, in order (added items last)."""

    value = param.List(default=[], item_type=str, doc="Raw ids of the edited history.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._labels: dict[str, str] = {}
        self._count = markdown()
        self._search = pn.widgets.TextInput(
            placeholder="search the history by title\u2026", sizing_mode="stretch_width"
        )
        self._search.param.watch(self._show, "value_input")
        self._list = pn.widgets.MultiSelect(
            options={}, size=12, height=LIST_HEIGHT, sizing_mode="stretch_width"
        )
        self._remove = pn.widgets.Button(label="Remove selected", width=150)
        self._remove.on_click(self._on_remove)
        self._add = pn.widgets.AutocompleteInput(
            label="Add an item",
            options={},
            case_sensitive=False,
            search_strategy="includes",
            min_characters=2,
            placeholder="type part of a title\u2026",
            sizing_mode="stretch_width",
        )
        self._add.param.watch(self._on_add, "value")
        self.param.watch(self._show, "value")
        self._layout = pn.Column(
            self._count,
            self._search,
            self._list,
            pn.Row(
                self._remove,
                caption("Select items (Ctrl- or Shift-click for several), then remove them."),
                sizing_mode="stretch_width",
            ),
            self._add,
            sizing_mode="stretch_width",
        )

    def set_catalogue(self, ids: Sequence[str], titles: Sequence[str]) -> None:
        """The items that can be added (raw ids and titles of the run's catalogue)."""
        self._labels = {str(i): f"{t} [{i}]" for i, t in zip(ids, titles, strict=True)}
        self._add.options = {label: i for i, label in self._labels.items()}
        self._show()

    def label(self, item: str) -> str:
        return self._labels.get(item, item)

    def shown(self) -> list[str]:
        """Raw ids of the listed items: the history filtered by the search box."""
        query = (self._search.value_input or "").strip().lower()
        return [i for i in self.value if query in self.label(i).lower()]

    def _show(self, *_: Any) -> None:
        shown = self.shown()
        self._list.options = {self.label(i): i for i in shown}
        matching = f" \u00b7 {len(shown)} match the search" if len(shown) < len(self.value) else ""
        self._count.object = md(
            "**History (training part): {n} items**{matching}", n=len(self.value), matching=matching
        )

    def _on_remove(self, _: Any = None) -> None:
        gone = set(self._list.value)
        if gone:
            self.value = [i for i in self.value if i not in gone]

    def _on_add(self, event: Any) -> None:
        item = event.new
        if item and item not in self.value:
            self.value = [*self.value, str(item)]

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout
