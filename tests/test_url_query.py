"""The page URL's query: every non-empty shared field, the run always."""

from __future__ import annotations

from urllib.parse import parse_qs

from app.dashboard.app import URL_FIELDS, url_query
from app.dashboard.state import Selection


def test_url_query_names_every_set_field_and_the_run() -> None:
    state = Selection(
        dataset="ml-100k", run="ml-100k/ease-20260101T000000Z", user="7", tab="fairness"
    )
    query = url_query(state)
    assert query.startswith("?")
    assert parse_qs(query[1:]) == {
        "dataset": ["ml-100k"],
        "run": ["ml-100k/ease-20260101T000000Z"],
        "user": ["7"],
        "tab": ["fairness"],
    }  # no empty item=
    state.item = "a&b=c"
    fields = parse_qs(url_query(state)[1:])
    assert fields["item"] == ["a&b=c"]  # escaped: one field, not two
    assert set(fields) == set(URL_FIELDS)
