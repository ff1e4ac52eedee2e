"""Concurrent SCIM requests against a real threaded server (SPEC F5 "Concurrency").

IdPs send many requests at once (Entra ID adds group members in parallel): membership
changes are single-row inserts, so none is lost, and concurrent duplicate creates give one
201 and 409 `uniqueness` for the rest. A barrier releases all threads together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select, update

from models import Membership, TeamMember, User

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MEMBERS = 16
CREATORS = 8

# Writes either race inside the one process (SCIM_WRITERS_PER_PROCESS=0, as they do between
# gunicorn's worker processes) or queue for it (the default, one at a time).
pytestmark = pytest.mark.parametrize(
    "config_overrides",
    [
        {"SCIM_WRITERS_PER_PROCESS": 0},
        {"SCIM_WRITERS_PER_PROCESS": 1},
    ],
    ids=["racing", "queued"],
)


@pytest.fixture
def server(live_server) -> str:
    """The app on a loopback port, one thread per request (tests/conftest.py)."""
    return live_server


@pytest.fixture
def idp(server, issued) -> Callable[..., requests.Response]:
    """Sends one request to the connector on the live server, as an IdP does."""
    base = f"{server}/scim/v2/{issued.connector.public_id}"
    headers = {
        "Authorization": f"Bearer {issued.token}",
        "Content-Type": "application/scim+json",
    }

    def send(method: str, path: str, json=None) -> requests.Response:
        return requests.request(method, base + path, json=json, headers=headers, timeout=60)

    return send


def all_at_once(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Run each call in its own thread, all released together."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_parallel_member_adds_to_one_team_lose_none(idp, session):
    user_ids = []
    for n in range(MEMBERS):
        created = idp("POST", "/Users", {"schemas": [USER], "userName": f"m{n}@example.com"})
        assert created.status_code == 201, created.text
        user_ids.append(created.json()["id"])
    group = idp("POST", "/Groups", {"schemas": [GROUP], "displayName": "Everyone"}).json()

    def add(user_id):
        body = {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": user_id}]}],
        }
        return lambda: idp("PATCH", f"/Groups/{group['id']}", body)

    responses = all_at_once([add(user_id) for user_id in user_ids])

    assert [r.status_code for r in responses] == [204] * MEMBERS, [r.text for r in responses]
    assert [r.content for r in responses] == [b""] * MEMBERS
    after = idp("GET", f"/Groups/{group['id']}").json()
    assert sorted(m["value"] for m in after["members"]) == sorted(user_ids)
    # Each add bumped the version once and answered with its own: none overwrote another's.
    assert after["meta"]["version"] == f'W/"{1 + MEMBERS}"'
    versions = sorted(f'W/"{n}"' for n in range(2, 2 + MEMBERS))
    assert sorted(r.headers["ETag"] for r in responses) == versions
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(TeamMember)) == MEMBERS


def test_parallel_creates_of_one_user_name_give_one_201_and_409s(idp, session):
    body = {"schemas": [USER], "userName": "same@example.com"}

    responses = all_at_once([lambda: idp("POST", "/Users", body)] * CREATORS)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (CREATORS - 1), [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["scimType"] == "uniqueness"
            assert response.headers["Content-Type"].startswith("application/scim+json")
    created = next(r.json() for r in responses if r.status_code == 201)
    found = idp("GET", '/Users?filter=userName eq "same@example.com"').json()
    assert [u["id"] for u in found["Resources"]] == [created["id"]]
    session.expire_all()
    key = Membership.user_name_key == "same@example.com"
    assert session.scalar(select(func.count()).select_from(Membership).where(key)) == 1
    email = User.email_key == "same@example.com"
    assert session.scalar(select(func.count()).select_from(User).where(email)) == 1


def test_parallel_adds_to_a_ruled_team_competing_for_the_last_seat_give_it_to_one(
    idp, session, issued
):
    """Team rules (SPEC F12): each add to the licensed team needs a seat and only one is
    left. One PATCH wins it; the others are refused whole (403), none half-applied."""
    from blueprints.members import rules
    from models import Account, Team, utcnow
    from tests.scim_api.test_team_rules import owner_of, seats_consistent

    account_id = issued.connector.account_id
    user_ids = []
    for n in range(CREATORS):
        created = idp("POST", "/Users", {"schemas": [USER], "userName": f"c{n}@example.com"})
        assert created.status_code == 201, created.text
        user_ids.append(created.json()["id"])
    members = [{"value": user_id} for user_id in user_ids]
    staff = idp("POST", "/Groups", {"schemas": [GROUP], "displayName": "Staff"}).json()
    contractors = idp(
        "POST", "/Groups", {"schemas": [GROUP], "displayName": "Contractors", "members": members}
    ).json()
    owner = owner_of(session, session.get(Account, account_id))
    for group, licensed in ((staff, True), (contractors, False)):
        team = session.scalar(select(Team).where(Team.scim_id == group["id"]))
        rules.add_rule(session, owner, team.id, "member", licensed, utcnow())
    # What the job would do, at once: contractors hold no licence; one seat is left.
    rules.apply(session, account_id, lambda m: m.id.isnot(None), strict=False)
    session.execute(
        update(Account).where(Account.id == account_id).values(seat_limit=Account.seats_used + 1)
    )
    session.commit()
    assert seats_consistent(session, account_id) == (1, 1)  # the owner's

    def add(user_id):
        body = {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": user_id}]}],
        }
        return lambda: idp("PATCH", f"/Groups/{staff['id']}", body)

    responses = all_at_once([add(user_id) for user_id in user_ids])

    codes = sorted(r.status_code for r in responses)
    assert codes == [204] + [403] * (CREATORS - 1), [r.text for r in responses]
    assert all("Licence limit reached" in r.text for r in responses if r.status_code == 403)
    after = idp("GET", f"/Groups/{staff['id']}").json()
    assert len(after.get("members", [])) == 1
    used, licensed = seats_consistent(session, account_id)
    assert used == licensed == session.get(Account, account_id).seat_limit
