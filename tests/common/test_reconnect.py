"""A database connection the server dropped (a PostgreSQL restart, a proxy's idle
timeout): without a ping before every request, the request that meets it is a 503 to
retry, never a 500, and the next one is served on a new connection (the SCIM API's case is
in tests/scim_api/test_auth.py)."""

from __future__ import annotations


def test_a_dropped_connection_is_one_503_page_then_served_again(
    client, owner, drop_database_connections
):
    wrong = {"email": owner.email, "passphrase": "not it"}
    assert client.post("/login", data=wrong).status_code == 401  # a pooled connection
    drop_database_connections()

    first = client.post("/login", data=wrong)
    again = client.post("/login", data=wrong)

    assert first.status_code == 503
    assert "Reload the page" in first.get_data(as_text=True)
    assert again.status_code == 401  # the form again, served on a new connection
