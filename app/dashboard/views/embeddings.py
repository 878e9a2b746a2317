"""Embeddings tab: UMAP maps of item and user embeddings linked to the shared selection."""

from __future__ import annotations

from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from app.dashboard.plots import embeddings as plots
from app.dashboard.shaping import attribute_columns
from app.dashboard.views.common import (
    Slot,
    TabView,
    caption,
    csv_download,
    guarded,
    hv_pane,
    live,
    markdown,
    md,
    no_selection,
)

ITEM_HOVER = ("title", "genres", "popularity")
USER_HOVER = ("activity",)
TAP_RADIUS = 0.03
"""A tap selects the nearest point only within this share of the map's extent."""


class EmbeddingsView(TabView):
    """Item map (genre/popularity/year/community colours) and user map (activity or a user
    attribute); tap to select."""

    item_color = param.Selector(default="genre", objects=["genre", "popularity", "year"])
    user_color = param.Selector(default="activity", objects=["activity"])
    n_neighbours = param.Integer(default=10, bounds=(1, 50))

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cache_maps: dict[tuple, pd.DataFrame] = {}
        self._marks_cache: tuple[hv.DynamicMap, hv.DynamicMap] | None = None
        self._item_slot = Slot()
        self._user_slot = Slot()
        self._search = pn.widgets.AutocompleteInput(
            label="Find an item by title",
            options=[],
            case_sensitive=False,
            search_strategy="includes",
            min_characters=2,
            placeholder="type part of a title\u2026",
            width=320,
        )
        self._search.param.watch(self._on_search, "value")
        self._item_color = pn.widgets.Select.from_param(self.param.item_color, width=150)
        self._user_color = pn.widgets.Select.from_param(self.param.user_color, width=150)
        self.state.param.watch(self._on_run, "run")
        self._on_run()

    # -- data ------------------------------------------------------------------------------
    def item_frame(self) -> pd.DataFrame:
        """The projected items of the selected run (cached per session)."""
        key = ("items", self.state.run)
        if key not in self._cache_maps:
            self._cache_maps.clear() if len(self._cache_maps) > 8 else None
            self._cache_maps[key] = self.service.item_map(self.state.run)
        return self._cache_maps[key]

    def user_frame(self) -> pd.DataFrame:
        """The projected users of the selected run (cached per session)."""
        key = ("users", self.state.run)
        if key not in self._cache_maps:
            self._cache_maps[key] = self.service.user_map(self.state.run)
        return self._cache_maps[key]

    def _on_run(self, *_: Any) -> None:
        if not self.state.run:
            return
        try:
            loaded = self.service.load(self.state.run)
        except Exception:  # noqa: BLE001 - the maps show the message
            return
        item_opts = ["genre", "popularity", "year"]
        if "community" in loaded.items.columns:
            item_opts.append("community")
        self.param.item_color.objects = item_opts
        user_opts = ["activity", *attribute_columns(loaded.users)]
        self.param.user_color.objects = user_opts
        self._item_color.options = item_opts
        self._user_color.options = user_opts
        if self.user_color not in user_opts:
            self.user_color = "activity"
        self._search.options = [
            f"{t} [{i}]" for i, t in zip(loaded.items["id"], loaded.items["title"], strict=True)
        ]

    def _on_search(self, event: Any) -> None:
        text = str(event.new or "")
        if text.endswith("]") and "[" in text:
            self.state.item = text.rsplit("[", 1)[1][:-1]

    # -- plot callbacks (also used directly by tests) --------------------------------------
    def item_points(self, run: str, color: str) -> hv.Element:
        """Base item map for ``run`` coloured by ``color``."""
        if not run:
            return hv.Points([], ["x", "y"])
        frame = self.item_frame()
        return plots.embedding_map(frame, color, ITEM_HOVER, title="Items")

    def user_points(self, run: str, color: str) -> hv.Element:
        """Base user map for ``run`` coloured by ``color``."""
        if not run:
            return hv.Points([], ["x", "y"])
        frame = self.user_frame()
        return plots.embedding_map(frame, color, USER_HOVER, title="Users")

    def item_highlights(self, run: str, user: str, k: int, item: str) -> hv.Overlay:
        """The selected user's history, held-out items and top-K, and the selected item."""
        frame = self.item_frame() if run else pd.DataFrame(columns=["x", "y", "id", "label"])
        history: list[str] = []
        recommended: list[str] = []
        heldout: list[str] = []
        if run and user:
            try:
                loaded = self.service.load(run)
                u = loaded.user_index(user)
                ids = loaded.items["id"].to_numpy()
                history = ids[loaded.history(u)].tolist()
                heldout = ids[loaded.heldout(u)].tolist()
                recommended = self.service.recommend(run, user, k)["id"].tolist()
            except Exception:  # noqa: BLE001 - an unknown user leaves the map unmarked
                pass
        return plots.highlight_layer(frame, history, recommended, [item] if item else [], heldout)

    def user_highlights(self, run: str, user: str) -> hv.Overlay:
        """The selected user ringed on the user map."""
        frame = self.user_frame() if run else pd.DataFrame(columns=["x", "y", "id", "label"])
        return plots.selection_layer(frame, [user] if user else [])

    # -- taps ------------------------------------------------------------------------------
    def pick(self, frame: pd.DataFrame, x: float | None, y: float | None) -> str | None:
        """Raw id of the point under a tap at (x, y), None when the tap is on empty space."""
        if x is None or y is None or frame.empty:
            return None
        row = plots.nearest_row(frame, x, y)
        span = max(float(np.ptp(frame["x"])), float(np.ptp(frame["y"])), 1e-9)
        dist = float(np.hypot(frame["x"].iloc[row] - x, frame["y"].iloc[row] - y))
        return str(frame["id"].iloc[row]) if dist <= TAP_RADIUS * span else None

    def _on_item_tap(self, x: float | None = None, y: float | None = None) -> None:
        picked = self.pick(self.item_frame(), x, y)
        if picked:
            self.state.item = picked

    def _on_user_tap(self, x: float | None = None, y: float | None = None) -> None:
        picked = self.pick(self.user_frame(), x, y)
        if picked:
            self.state.user = picked

    # -- panels ----------------------------------------------------------------------------
    def _marks(self) -> tuple[hv.DynamicMap, hv.DynamicMap]:
        """The highlight layers of both maps (made once: every redrawn map reuses them)."""
        if self._marks_cache is None:
            st = self.state.param
            self._marks_cache = (
                hv.DynamicMap(
                    pn.bind(self.item_highlights, run=st.run, user=st.user, k=st.k, item=st.item)
                ),
                hv.DynamicMap(pn.bind(self.user_highlights, run=st.run, user=st.user)),
            )
        return self._marks_cache

    def draw_items(self) -> None:
        """Draw the item map afresh (a new plot: its legend or colour bar follows the colouring)."""
        items = self.item_points(self.state.run, self.item_color)
        hv.streams.Tap(source=items).add_subscriber(self._on_item_tap)
        self._item_slot.body.objects = [hv_pane(plots.with_marks(items, self._marks()[0]))]

    def draw_users(self) -> None:
        """Draw the user map afresh (a new plot: its legend or colour bar follows the colouring)."""
        users = self.user_points(self.state.run, self.user_color)
        hv.streams.Tap(source=users).add_subscriber(self._on_user_tap)
        self._user_slot.body.objects = [hv_pane(plots.with_marks(users, self._marks()[1]))]

    # A colouring changed while the tab is hidden (a new run without the old one's attribute)
    # is drawn by :meth:`maps` when the tab is shown: the run changed too.
    @param.depends("item_color", watch=True)
    def _on_item_color(self) -> None:
        if self.state.run and self.state.tab == "embeddings":
            self._item_slot.fill(self.draw_items)

    @param.depends("user_color", watch=True)
    def _on_user_color(self) -> None:
        if self.state.run and self.state.tab == "embeddings":
            self._user_slot.fill(self.draw_users)

    @param.depends("state.run")
    @guarded
    def maps(self) -> pn.viewable.Viewable:
        """Both maps with their colour selectors. A map is a new plot whenever its run or its
        colouring changes (a Bokeh plot cannot swap a legend for a colour bar in place); the
        highlights update in place."""
        if not self.state.run:
            return no_selection("Pick or train a run to see its embeddings.")
        self.item_frame()  # compute the projections now so errors show as one message
        self.user_frame()
        self._item_slot.fill(self.draw_items)
        self._user_slot.fill(self.draw_users)
        return pn.Row(
            pn.Column(
                pn.Row(self._item_color, self._search),
                self._item_slot.layout,
                caption(
                    "Items placed by UMAP of the model's item embeddings (close = similar to the "
                    "model), coloured as chosen above (legend or colour bar on the right). Black "
                    "circles: the user's history; stars: their top-K; green squares: held-out "
                    "items; red ring: the selected item. Tap an item to select it."
                ),
                sizing_mode="stretch_width",
            ),
            pn.Column(
                self._user_color,
                self._user_slot.layout,
                caption(
                    "Users placed by UMAP of their embeddings, coloured as chosen above; the red "
                    "ring is the selected user. Tap a user to select them everywhere."
                ),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    @param.depends("state.run", "state.item", "n_neighbours")
    @guarded
    def neighbours_panel(self) -> pn.viewable.Viewable:
        """The selected item's nearest neighbours in embedding space."""
        if not (self.state.run and self.state.item):
            return no_selection(
                "Select an item (tap it, search its title or click a "
                "recommendation) to see its nearest neighbours."
            )
        frame = self.service.neighbours(self.state.run, self.state.item, self.n_neighbours)
        loaded = self.service.load(self.state.run)
        title = loaded.items["title"].iloc[loaded.item_index(self.state.item)]
        frame = frame.assign(similarity=frame["similarity"].round(4))
        return pn.Column(
            markdown(
                md("**Nearest to \u201c{title}\u201d** (cosine of item embeddings)", title=title)
            ),
            pn.widgets.Tabulator(
                frame, disabled=True, show_index=False, sizing_mode="stretch_width", height=300
            ),
            csv_download(lambda: frame, "reclens-neighbours.csv"),
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            live(self.maps),
            live(self.neighbours_panel),
            sizing_mode="stretch_width",
        )
