"""A token's IP allow-list and read-only scope through the SCIM API (SPEC F11), as an IdP
sees them: a request from outside the allow-list gets 401 saying the address is not
allowed (IPv4, IPv6, IPv4 seen as IPv6, behind a configured proxy), is logged with its
address and shows on the health panel; a read-only token reads (GET, POST /.search) and
its writes get 403 with nothing changed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from blueprints.scim_settings import connector as service
from blueprints.scim_settings import health
from models import Membership, ScimProblem, ScimRequestLog, Team, utcnow
from tests.scim_api.conftest import assert_401, assert_scim_error, provision

SPC = "/ServiceProviderConfig"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _restricted(session, issued, owner, allowed=None, read_only=False, name="Restricted"):
    made = service.create_token(
        session, issued.connector, owner, name, "365", utcnow(), allowed, read_only
    )
    session.commit()
    return made


def _from(addr: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": addr}}


@pytest.mark.parametrize(
    "allowed, addr",
    [
        ("203.0.113.0/24", "203.0.113.77"),
        ("203.0.113.5", "203.0.113.5"),
        ("2001:db8::/32", "2001:db8:1::9"),
        ("198.51.100.0/24, 2001:db8::/32", "2001:db8::1"),
        ("203.0.113.0/24", "::ffff:203.0.113.8"),  # an IPv4 client on a dual-stack socket
    ],
)
def test_a_request_from_inside_the_allow_list_is_served(
    scim, session, issued, owner, allowed, addr
):
    restricted = _restricted(session, issued, owner, allowed)

    assert scim("GET", SPC, token=restricted.token, **_from(addr)).status_code == 200


@pytest.mark.parametrize(
    "allowed, addr",
    [
        ("203.0.113.0/24", "198.51.100.7"),
        ("203.0.113.0/24", "2001:db8::1"),  # another family is never inside
        ("2001:db8::/32", "2001:db9::1"),
        ("2001:db8::/32", "203.0.113.1"),
    ],
)
def test_a_request_from_outside_the_allow_list_gets_401_naming_the_address(
    scim, session, issued, owner, allowed, addr
):
    restricted = _restricted(session, issued, owner, allowed)

    body = assert_401(scim("GET", "/Users", token=restricted.token, **_from(addr)))

    assert body["detail"].startswith(
        f'Requests from {addr} are not allowed with the SCIM token "Restricted"'
    )
    assert restricted.token not in body["detail"]
    # The connector's unrestricted token, from the same address, still works.
    assert scim("GET", "/Users", **_from(addr)).status_code == 200


def test_the_refusal_is_logged_with_the_address_and_shown_as_a_problem(
    scim, session, issued, owner
):
    restricted = _restricted(session, issued, owner, "203.0.113.0/24")

    for _ in range(3):  # an IdP retrying: one problem, counted
        assert_401(scim("GET", "/Users", token=restricted.token, **_from("198.51.100.7")))

    session.expire_all()
    row = session.scalars(select(ScimRequestLog).order_by(ScimRequestLog.id.desc())).first()
    assert (row.status, row.remote_addr) == (401, "198.51.100.7")
    assert "198.51.100.7" in row.detail
    problem = session.scalar(select(ScimProblem))
    assert problem.kind == health.ACCESS
    assert problem.count == 3
    assert "198.51.100.7" in problem.key and "Restricted" in problem.key
    assert session.get(type(restricted.scim_token), restricted.scim_token.id).last_used_at is None


def test_forwarded_for_does_not_get_a_client_inside_the_allow_list_without_a_proxy(
    scim, session, issued, owner
):
    restricted = _restricted(session, issued, owner, "203.0.113.0/24")

    response = scim(
        "GET",
        SPC,
        token=restricted.token,
        headers={"X-Forwarded-For": "203.0.113.9"},
        **_from("192.0.2.1"),
    )

    assert "Requests from 192.0.2.1 are not allowed" in assert_401(response)["detail"]


@pytest.mark.parametrize("config_overrides", [{"PROXY_FIX_X_FOR": 1}])
def test_behind_a_configured_proxy_the_client_address_is_the_one_checked(
    scim, session, issued, owner
):
    restricted = _restricted(session, issued, owner, "203.0.113.0/24")
    proxied = {"environ_base": {"REMOTE_ADDR": "10.0.0.2"}}

    inside = scim(
        "GET", SPC, token=restricted.token, headers={"X-Forwarded-For": "203.0.113.9"}, **proxied
    )
    # What the client itself put first is not believed: the proxy's own entry decides.
    outside = scim(
        "GET",
        SPC,
        token=restricted.token,
        headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.4"},
        **proxied,
    )

    assert inside.status_code == 200
    assert "Requests from 198.51.100.4 are not allowed" in assert_401(outside)["detail"]


def test_changing_the_allow_list_applies_to_the_next_request(scim, session, issued, owner):
    restricted = _restricted(session, issued, owner, "203.0.113.0/24")
    assert_401(scim("GET", SPC, token=restricted.token, **_from("198.51.100.7")))

    service.change_access(
        session,
        issued.connector,
        restricted.scim_token,
        owner,
        "203.0.113.0/24\n198.51.100.0/24",
        False,
        utcnow(),
    )
    session.commit()

    assert scim("GET", SPC, token=restricted.token, **_from("198.51.100.7")).status_code == 200


# --- read-only ----------------------------------------------------------------------------


@pytest.fixture
def reader(session, issued, owner):
    return _restricted(session, issued, owner, read_only=True, name="Reporting")


def test_a_read_only_token_reads_users_groups_and_searches(scim, issued, reader):
    provision(scim, "ada@example.com")

    listed = scim("GET", "/Users", token=reader.token)
    searched = scim(
        "POST",
        "/Users/.search",
        token=reader.token,
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName eq "ada@example.com"',
        },
    )
    root = scim(
        "POST",
        "/.search",
        token=reader.token,
        json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]},
    )

    assert listed.status_code == 200 and listed.get_json()["totalResults"] == 1
    assert searched.status_code == 200 and searched.get_json()["totalResults"] == 1
    assert root.status_code == 200
    assert scim("GET", "/Groups", token=reader.token).status_code == 200
    assert scim("GET", "/Schemas", token=reader.token).status_code == 200


def _counts(session) -> tuple[int, int]:
    session.expire_all()
    return (
        session.scalar(select(func.count()).select_from(Membership)),
        session.scalar(select(func.count()).select_from(Team)),
    )


def test_every_write_of_a_read_only_token_gets_403_and_changes_nothing(
    scim, session, issued, reader
):
    user = provision(scim, "ada@example.com")
    group = scim(
        "POST",
        "/Groups",
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Eng"},
    ).get_json()
    before = _counts(session)
    writes = [
        ("POST", "/Users", {"schemas": [USER], "userName": "eve@example.com"}),
        ("PUT", f"/Users/{user['id']}", {"schemas": [USER], "userName": "mallory@example.com"}),
        (
            "PATCH",
            f"/Users/{user['id']}",
            {
                "schemas": [PATCH],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            },
        ),
        ("DELETE", f"/Users/{user['id']}", None),
        (
            "PATCH",
            f"/Groups/{group['id']}",
            {
                "schemas": [PATCH],
                "Operations": [{"op": "replace", "path": "displayName", "value": "x"}],
            },
        ),
        ("DELETE", f"/Groups/{group['id']}", None),
    ]

    for method, path, body in writes:
        response = scim(method, path, token=reader.token, json=body)
        detail = assert_scim_error(response, 403)["detail"]
        assert detail.startswith('The SCIM token "Reporting" is read-only'), (method, path)

    assert _counts(session) == before
    after = scim("GET", f"/Users/{user['id']}").get_json()
    assert (after["userName"], after["active"]) == ("ada@example.com", True)
    assert scim("GET", f"/Groups/{group['id']}").get_json()["displayName"] == "Eng"


def test_a_read_only_write_is_logged_and_shown_as_a_problem(scim, session, reader):
    scim("POST", "/Users", token=reader.token, json={"schemas": [USER], "userName": "e@x.test"})

    session.expire_all()
    row = session.scalars(select(ScimRequestLog).order_by(ScimRequestLog.id.desc())).first()
    assert (row.method, row.status) == ("POST", 403)
    problem = session.scalar(select(ScimProblem))
    assert (problem.kind, problem.key) == (health.ACCESS, "Reporting: read-only")


def test_a_read_only_token_from_outside_its_allow_list_is_refused_before_its_scope(
    scim, session, issued, owner
):
    both = _restricted(session, issued, owner, "203.0.113.0/24", read_only=True)

    response = scim("POST", "/Users", token=both.token, json={}, **_from("198.51.100.1"))

    assert "not allowed" in assert_401(response)["detail"]
