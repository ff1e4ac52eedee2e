"""Whatever the query string holds, the list and the export answer (SPEC: never a 500)."""

import pytest

from tests.members.conftest import MEMBERS

QUERIES = {
    "nul": "q=a%00b",
    "invalid-utf8": "q=%ED%A0%80x",
    "team-overflow": "team=99999999999",
    "team-huge": "team=" + "9" * 5000,
    "team-unicode-digit": "team=%C2%B2",
    "page-unicode-digit": "page=%C2%B2",
    "page-huge": "page=99999999",
    "unknown-sort": "sort=passphrase_hash&order=sideways",
}


@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
def test_garbage_in_the_query_string_still_lists(as_owner, query):
    page = as_owner.get(f"{MEMBERS}?{query}")
    assert page.status_code == 200
    assert 'id="members-results"' in page.get_data(as_text=True)
    export = as_owner.get(f"{MEMBERS}/export.csv?{query}")
    assert export.status_code == 200
    assert export.get_data(as_text=True).startswith("email,name,role")


@pytest.mark.parametrize(
    "path", ["/99999999999/row", "/99999999999/deactivate", "/teams/99999999999"]
)
def test_ids_out_of_range_are_not_found(as_owner, path):
    assert as_owner.get(MEMBERS + path).status_code == 404


def test_domain_ids_out_of_range_are_not_found(as_owner):
    assert as_owner.get("/enterprise/domains/99999999999").status_code == 404
    assert as_owner.post("/enterprise/domains/99999999999/verify").status_code == 404
