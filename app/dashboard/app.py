"""The page: a FastListTemplate with the sidebar, the five tabs, URL sync and friendly errors.

:func:`create_app` builds one page for one browser session around the process's
:class:`~app.dashboard.engine_service.EngineService`. The URL carries ``dataset``, ``run``,
``user``, ``item`` and ``tab``, so a copied link opens the same view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import panel as pn
from panel.theme.fast import Fast

from app.dashboard.engine_service import EngineService
from app.dashboard.export import export_button
from app.dashboard.state import TABS, Selection
from app.dashboard.views.common import (
    MessagePane,
    TabView,
    divider,
    error_pane,
    friendly,
    hide_paths,
    markdown,
    md,
    multichoice_label,
)
from app.dashboard.views.diffusion import DiffusionView
from app.dashboard.views.embeddings import EmbeddingsView
from app.dashboard.views.explain import ExplainView
from app.dashboard.views.fairness import FairnessView
from app.dashboard.views.overview import OverviewView
from data.errors import ReclensError

log = logging.getLogger("reclens.dashboard")

URL_FIELDS: tuple[str, ...] = ("dataset", "run", "user", "item", "tab")
TAB_TITLES: dict[str, str] = {
    "overview": "Overview",
    "embeddings": "Embeddings",
    "explain": "Explain",
    "diffusion": "Diffusion",
    "fairness": "Fairness & diversity",
}
CSS = """
.reclens-caption p { color: #555; font-size: 0.86em; font-style: italic; margin: 0; }
.reclens-sentence { font-size: 1.05em; }
"""

_EXTENSION_LOADED = False


def load_extensions() -> None:
    """Load Panel's extensions once per process (Tabulator, HoloViews)."""
    global _EXTENSION_LOADED
    if not _EXTENSION_LOADED:
        # The Fast design links a Google web font; the page must work offline, so it uses the
        # system font instead and never asks the browser to fetch anything from the internet.
        Fast._resources = {k: v for k, v in Fast._resources.items() if k != "font"}
        # design="fast": every component carries the template's design from its creation. One
        # created without it gains the default theme's stylesheet at its first update, and the
        # browser restyles it: the first user switch after a page load took three times longer.
        pn.extension(
            "tabulator",
            raw_css=[CSS],
            notifications=True,
            sizing_mode="stretch_width",
            design="fast",
        )
        import holoviews as hv

        hv.extension("bokeh", logo=False)
        # Canvas, not WebGL: every plot here is small (maps above 50,000 points are rasterized),
        # and a WebGL context costs a browser without a GPU (software GL) far more than it saves.
        hv.renderer("bokeh").webgl = False
        _EXTENSION_LOADED = True


class Page:
    """One session's page: the shared selection, the sidebar, the tabs and the template."""

    def __init__(self, service: EngineService, args: Mapping[str, str] | None = None) -> None:
        self.service = service
        self.state = Selection()
        self._apply_args(dict(args or {}))
        self.views: dict[str, TabView] = {}
        # A tab's view is built the first time the tab is shown: a page opened on one tab does
        # not pay for the other four.
        self._slots = {
            name: pn.Column(sizing_mode="stretch_width", margin=0) for name in TABS
        }  # fmt: skip
        self._build_sidebar()
        self.tabs = pn.Tabs(
            *[(TAB_TITLES[name], self._slots[name]) for name in TABS],
            dynamic=True,
            sizing_mode="stretch_width",
        )
        self.tabs.active = TABS.index(self.state.tab)
        self.view(self.state.tab)
        self.tabs.param.watch(self._on_tab_index, "active")
        self.state.param.watch(self._on_tab_name, "tab")
        self.state.param.watch(self._on_run, "run")
        self.state.param.watch(self._on_user, "user")
        self.state.param.watch(self._on_dataset, "dataset")
        self.message = MessagePane(
            hide_paths(self.state.message),
            alert_type="warning",
            visible=bool(self.state.message),
            sizing_mode="stretch_width",
        )
        self.state.param.watch(self._on_message, "message")

    # -- selection set-up ------------------------------------------------------------------
    def _apply_args(self, args: dict[str, str]) -> None:
        """Validate the URL's arguments and fill in defaults (the newest run, a first user)."""
        st = self.state
        tab = args.get("tab", "overview")
        st.tab = tab if tab in TABS else "overview"
        problems: list[str] = []
        try:
            runs = self.service.run_ids()
        except ReclensError as err:
            runs = []
            problems.append(str(err))
        dataset = args.get("dataset", "")
        run = args.get("run", "")
        if run and run not in runs:
            problems.append(
                f"Run {run!r} is not in the runs folder; showing the newest run instead. Pick "
                "one in the sidebar, or train one with reclens demo."
            )
            run = ""
        if not runs:
            problems.append(
                "There are no runs in the runs folder yet: start one in the training panel "
                "below, or run reclens demo (trains the default models, then serves)."
            )
        if not run and runs:
            wanted = [r for r in self.service.run_ids(dataset)] if dataset else runs
            run = (wanted or runs)[0]
        st.run = run
        if run:
            st.dataset = self.service.summary(run).dataset
        user = args.get("user", "")
        if run and not user:
            user = self._default_user(run)
        st.user = user
        st.item = args.get("item", "")
        st.message = " ".join(problems)
        if run and user:
            self._check_user(user)

    def _default_user(self, run: str) -> str:
        """A user with test items (the first evaluated one), else the first user."""
        try:
            loaded = self.service.load(run)
        except ReclensError:
            return ""
        evaluated = loaded.split.eval_users("test")
        index = int(evaluated[0]) if evaluated.size else 0
        return str(loaded.users["id"].iloc[index]) if len(loaded.users) else ""

    def _check_user(self, user: str) -> bool:
        try:
            self.service.load(self.state.run).user_index(user)
        except ReclensError as err:
            self.state.message = str(err)
            return False
        return True

    # -- views -----------------------------------------------------------------------------
    def view(self, name: str) -> TabView:
        """The view of tab ``name``, built (and put in its tab) on first use."""
        if name not in self.views:
            common = {"state": self.state, "service": self.service}
            try:
                view = VIEWS[name](**common)
            except Exception as err:  # noqa: BLE001 - one broken tab must not blank the page
                log.exception("cannot build the %s tab", name)
                view = _Broken(message=err, **common)
            self.views[name] = view
            self._slots[name].objects = [view]
        return self.views[name]

    def _build_sidebar(self) -> None:
        st = self.state
        self.dataset_select = pn.widgets.Select(
            label="Dataset", options=self._datasets(), value=st.dataset or None
        )
        self.run_select = pn.widgets.Select(label="Run (model)", options=self._run_options())
        if st.run in self.run_select.options.values():
            self.run_select.value = st.run
        self.compare = pn.widgets.MultiChoice(
            label="Compare with", options=self._compare_options(exclude=st.run), value=[]
        )
        self.user_input = pn.widgets.AutocompleteInput(
            label="User id",
            options=self._user_options(),
            value=st.user,
            restrict=False,
            case_sensitive=False,
            min_characters=1,
            search_strategy="starts_with",
            placeholder="type a user id\u2026",
        )
        self.title_input = pn.widgets.AutocompleteInput(
            label="\u2026or find users by a title in their history",
            options=self._title_options(),
            case_sensitive=False,
            search_strategy="includes",
            min_characters=2,
            placeholder="type part of a title\u2026",
        )
        self.title_users = pn.widgets.Select(
            label="Users with that title", options=[], visible=False
        )
        self.k_slider = pn.widgets.IntSlider(label="K (list length)", start=1, end=50, value=st.k)

        self.dataset_select.param.watch(lambda e: setattr(st, "dataset", e.new or ""), "value")
        self.run_select.param.watch(lambda e: setattr(st, "run", e.new or ""), "value")
        self.compare.param.watch(lambda e: setattr(st, "compare", list(e.new)), "value")
        self.user_input.param.watch(self._on_user_input, "value")
        self.title_input.param.watch(self._on_title, "value")
        self.title_users.param.watch(self._on_title_user, "value")
        self.k_slider.link(st, value="k", bidirectional=True)

    def _datasets(self) -> list[str]:
        try:
            return self.service.datasets()
        except ReclensError:
            return []

    def _run_options(self, exclude: str = "") -> dict[str, str]:
        options: dict[str, str] = {}
        try:
            summaries = self.service.summaries()
        except ReclensError:
            return options
        for s in summaries:
            if self.state.dataset and s.dataset != self.state.dataset:
                continue
            rid = self.service.run_id_of(s.path)
            if rid == exclude:
                continue
            label = f"{s.model} \u00b7 {s.created[:16].replace('T', ' ')} \u00b7 {rid}"
            options[label] = rid
        return options

    def _compare_options(self, exclude: str) -> dict[str, str]:
        """Run options of the Compare box (a MultiChoice renders its labels as HTML)."""
        return {multichoice_label(k): v for k, v in self._run_options(exclude).items()}

    def _user_options(self) -> list[str]:
        if not self.state.run:
            return []
        try:
            return self.service.load(self.state.run).users["id"].astype(str).tolist()
        except ReclensError:
            return []

    def _title_options(self) -> list[str]:
        if not self.state.run:
            return []
        try:
            items = self.service.load(self.state.run).items
        except ReclensError:
            return []
        return [f"{t} [{i}]" for i, t in zip(items["id"], items["title"], strict=True)]

    # -- watchers --------------------------------------------------------------------------
    def _on_tab_index(self, event: Any) -> None:
        name = TABS[event.new]
        if self.state.tab != name:
            self.state.tab = name
        self.view(name)

    def _on_tab_name(self, event: Any) -> None:
        index = TABS.index(event.new)
        if self.tabs.active != index:
            self.tabs.active = index

    def _on_dataset(self, event: Any) -> None:
        options = self._run_options()
        self.run_select.options = options
        if self.state.run not in options.values() and options:
            self.state.run = next(iter(options.values()))

    def _on_run(self, event: Any) -> None:
        run = event.new
        if run and run not in self.run_select.options.values():
            self.run_select.options = self._run_options()
        if run in self.run_select.options.values() and self.run_select.value != run:
            self.run_select.value = run
        self.compare.options = self._compare_options(exclude=run)
        self.compare.value = [r for r in self.compare.value if r != run]
        self.user_input.options = self._user_options()
        self.title_input.options = self._title_options()
        if run:
            try:
                summary = self.service.summary(run)
                if self.state.dataset != summary.dataset:
                    self.state.dataset = summary.dataset
            except ReclensError as err:
                self.state.message = str(err)
                return
            if self.state.user and not self._check_user(self.state.user):
                self.state.user = self._default_user(run)
                self.state.message = ""

    def _on_user(self, event: Any) -> None:
        if self.user_input.value != event.new:
            self.user_input.value = event.new
        if not event.new:
            return
        if self._check_user(event.new):
            self.state.message = ""

    def _on_user_input(self, event: Any) -> None:
        value = str(event.new or "").strip()
        if value and value != self.state.user:
            self.state.user = value

    def _on_title(self, event: Any) -> None:
        text = str(event.new or "")
        if not (text.endswith("]") and "[" in text and self.state.run):
            return
        item = text.rsplit("[", 1)[1][:-1]
        try:
            users = self.service.users_with_item(self.state.run, item)
        except ReclensError as err:
            self.state.message = str(err)
            return
        self.title_users.options = users
        self.title_users.visible = True
        self.state.item = item
        if users:
            self.title_users.value = users[0]

    def _on_title_user(self, event: Any) -> None:
        if event.new:
            self.state.user = str(event.new)

    def _on_message(self, event: Any) -> None:
        self.message.object = hide_paths(event.new)
        self.message.visible = bool(event.new)

    # -- page ------------------------------------------------------------------------------
    def sync_url(self) -> None:
        """Keep ``dataset``, ``run``, ``user``, ``item`` and ``tab`` in the page URL.

        The URL is read once, by :meth:`_apply_args`, and from then on only written: the whole
        query at once (:func:`url_query`), when the page has loaded in the browser and at every
        change of one of those fields. Panel's ``location.sync`` is not used: it applies the
        URL's values over the page's (a ``run=`` that is not in the runs folder was put back
        over the fallback run), and the browser's own address replaces the query it writes
        before the page has loaded (a link opened without ``run=`` never gained it).
        """
        if pn.state.location is None:
            return
        self.state.param.watch(self._write_url, list(URL_FIELDS))
        pn.state.onload(self._write_url)

    def _write_url(self, *_: Any) -> None:
        location = pn.state.location
        if location is not None:
            query = url_query(self.state)
            if location.search != query:
                location.search = query

    def dispose(self) -> None:
        """Drop this session's caches (the browser tab was closed)."""
        for view in self.views.values():
            view.dispose()
        self.views.clear()

    def template(self) -> pn.template.FastListTemplate:
        """The whole page."""
        sidebar = [
            self.dataset_select,
            self.run_select,
            self.compare,
            divider(),
            self.user_input,
            self.title_input,
            self.title_users,
            self.k_slider,
            divider(),
            export_button(self.service, self.state),
            markdown(
                md(
                    "<small>Selecting a user or item anywhere selects it in every tab. The page "
                    "address keeps the view: copy it to share.</small>"
                )
            ),
        ]
        return pn.template.FastListTemplate(
            title="RecLens",
            sidebar=sidebar,
            main=[self.message, self.tabs],
            accent="#E6550D",
            header_background="#2F4B7C",
            font="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
            sidebar_width=320,
            main_layout=None,
        )


def url_query(state: Selection) -> str:
    """The page URL's query for ``state``: every non-empty field of :data:`URL_FIELDS`, the run
    always (a link keeps its run when a newer one becomes the default)."""
    fields = {name: getattr(state, name) for name in URL_FIELDS}
    return "?" + urlencode({name: value for name, value in fields.items() if value})


VIEWS: dict[str, type[TabView]] = {
    "overview": OverviewView,
    "embeddings": EmbeddingsView,
    "explain": ExplainView,
    "diffusion": DiffusionView,
    "fairness": FairnessView,
}
"""The view class of each tab."""


class _Broken(TabView):
    """A tab that could not be built: shows why."""

    def __init__(self, message: BaseException, **params: Any) -> None:
        super().__init__(**params)
        self._error = message

    def __panel__(self) -> pn.viewable.Viewable:
        return error_pane(self._error)


def create_app(service: EngineService) -> pn.viewable.Viewable:
    """Build one session's page (called by the server for every new browser session)."""
    load_extensions()
    started = time.perf_counter()
    args = {}
    for key, values in (pn.state.session_args or {}).items():
        if key in URL_FIELDS and values:
            raw = values[0]
            args[key] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        page = Page(service, args)
    except Exception as err:  # noqa: BLE001 - never a blank page
        log.exception("cannot build the page")
        return pn.Column(
            markdown(md("# RecLens")),
            error_pane(err),
            friendly("Check the runs folder, or start again with `reclens demo`.", "info"),
        )
    page.sync_url()
    pn.state.on_session_destroyed(lambda _ctx: page.dispose())
    # the page's training jobs belong to it: closing the page cancels them
    pn.state.on_session_destroyed(lambda ctx: service.jobs.cancel_session(ctx.id))
    template = page.template()
    log.debug("page built in %.3f s", time.perf_counter() - started)
    return template
