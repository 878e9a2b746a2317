"""The one shared selection every view reads and writes.

Selecting a user or an item anywhere sets it here, and every tab follows. The fields that make a
view shareable (dataset, run, user, item, tab) are synced to the page URL by
:mod:`app.dashboard.app`.
"""

from __future__ import annotations

import param

TABS: tuple[str, ...] = ("overview", "embeddings", "explain", "diffusion", "fairness")
"""Tab names in display order; the URL's ``tab`` is one of them."""


class Selection(param.Parameterized):
    """What the page shows: dataset, run, user, item, K, tab and the runs compared with the run.

    ``user`` and ``item`` are raw ids (strings, as in the dataset's ``raw_id`` column; empty means
    none). ``run`` is a run id as listed by the engine service, never a path.
    """

    dataset = param.String(default="", doc="Dataset source of the selected run.")
    run = param.String(default="", doc="Selected run id (a name from the runs list).")
    user = param.String(default="", doc="Selected user's raw id.")
    item = param.String(default="", doc="Selected item's raw id (empty: none).")
    k = param.Integer(default=10, bounds=(1, 50), doc="Length of the recommendation lists.")
    tab = param.Selector(default="overview", objects=list(TABS), doc="Visible tab.")
    compare = param.List(default=[], item_type=str, doc="Other runs shown beside the run.")
    message = param.String(default="", doc="A friendly problem report shown above the tabs.")
