"""A published SCIM conformance suite against the API served on loopback (SPEC F5):
python-scim's scim2-tester, over a scim2-client httpx2 client, with the connector URL and
token an IdP admin would paste, the app's default settings (rate limits included: the
tester sends one request at a time), on SQLite and, with TEST_DATABASE=postgresql, on
PostgreSQL.

The tester discovers the server from /Schemas and /ResourceTypes and then creates, reads,
lists, searches, replaces, patches (add, replace and remove on every attribute the schemas
list) and deletes Users and Groups, checking each answer against RFC 7643/7644. Every
check must pass; none is expected to fail (a check contradicting the RFC or an IdP's
documented behaviour would be listed in EXPECTED_FAILURES, with the reason).
"""

from __future__ import annotations

from collections import Counter

import pytest
from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from blueprints.scim_settings import connector as connectors

PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
# (resource type, check title) -> why our behaviour is right and the check is not.
EXPECTED_FAILURES: dict[tuple[str | None, str], str] = {}


@pytest.fixture
def tester(app, live_server, issued):
    """The tester's client, configured as an IdP admin would: connector URL and token."""
    app.config["BASE_URL"] = live_server  # the URLs in meta.location and $ref
    with Client(
        base_url=connectors.base_url(issued.connector),
        headers={"Authorization": f"Bearer {issued.token}"},
        timeout=30,
    ) as http:
        yield SyncSCIMClient(http)


def test_scim2_tester_passes_every_check(tester):
    results = check_server(tester)

    statuses = Counter(r.status.name for r in results)
    failed = {
        (r.resource_type, r.title): f"{r.status.name}: {r.reason}"
        for r in results
        if r.status not in PASSING and (r.resource_type, r.title) not in EXPECTED_FAILURES
    }
    assert failed == {}, statuses
    # The whole User schema (RFC 7643 §4.1) and its extension are checked, attribute by
    # attribute: well over 100 checks, every one of them run (none skipped).
    assert sum(statuses[s.name] for s in PASSING) >= 130, statuses
    assert statuses[Status.SKIPPED.name] == 0, statuses
    checked = {r.resource_type for r in results}
    assert {"User", "Group"} <= checked
