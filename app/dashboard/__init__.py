"""The RecLens dashboard: a Panel app over the engine's runs.

- :mod:`app.dashboard.engine_service`: the one per-process service (datasets, runs, caches, jobs);
- :mod:`app.dashboard.plots`: pure functions from engine results to HoloViews elements;
- :mod:`app.dashboard.views`: one :class:`panel.viewable.Viewer` per tab;
- :mod:`app.dashboard.app`: the page (template, sidebar, URL sync, error messages);
- :mod:`app.dashboard.server`: ``serve(service, port, address)``.
"""
