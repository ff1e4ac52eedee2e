"""Tenant isolation (SPEC F5/F9): a connector's token reaches only its own account's users
and groups. Tenant B, with its own valid token, tries every read, write, filter and
reference on tenant A's ids; and B's failed authentications never throttle A's valid
requests from the same address."""

from __future__ import annotations

import pytest

from tests.scim_api.conftest import Scim, assert_401, assert_scim_error

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    return response.get_json() if status != 204 else {}


def new_user(idp: Scim, user_name: str, **attributes) -> str:
    body = {"schemas": [USER], "userName": user_name, "active": False} | attributes
    return ok(idp("POST", "/Users", json=body), 201)["id"]


def new_group(idp: Scim, name: str, members=(), **attributes) -> str:
    body = {"schemas": [GROUP], "displayName": name, "members": [{"value": m} for m in members]}
    return ok(idp("POST", "/Groups", json=body | attributes), 201)["id"]


def fetch(idp: Scim, kind: str, scim_id: str) -> dict:
    return ok(idp("GET", f"/{kind}/{scim_id}"))


def patch_op(*operations) -> dict:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


KINDS = ("Users", "Groups")


def everything(idp: Scim) -> tuple[dict, dict]:
    """All of a tenant's users and groups as its own IdP reads them (meta.version included)."""
    return tuple(ok(idp("GET", f"/{kind}", query_string={"count": 200})) for kind in KINDS)


def listed_ids(body: dict) -> list[str]:
    return [resource["id"] for resource in body.get("Resources", [])]


@pytest.fixture
def theirs(client, other_issued) -> Scim:
    """Tenant B's IdP: B's valid token on B's connector URL."""
    return Scim(client, other_issued)


@pytest.fixture
def ours(scim) -> dict:
    """Tenant A: Ada (every attribute filters look up), Mia, and Engine with Ada in it."""
    ada = new_user(
        scim,
        "ada@example.com",
        externalId="ext-ada",
        displayName="Ada Lovelace",
        emails=[{"value": "ada@example.com", "type": "work", "primary": True}],
    )
    mia = new_user(scim, "mia@example.com")
    engine = new_group(scim, "Analytical Engine", [ada], externalId="ext-engine")
    return {"ada": ada, "mia": mia, "engine": engine}


@pytest.fixture
def their(theirs) -> dict:
    """Tenant B's own users (sorting around A's names) and group Team with Zoe in it."""
    made = {name: new_user(theirs, f"{name}@example.org") for name in ("alan", "bob", "zoe")}
    made["team"] = new_group(theirs, "Team", [made["zoe"]])
    made["board"] = new_group(theirs, "Board")
    return made


# --- B's token, B's URL, A's ids: 404, nothing changed ----------------------------------

WRITES = {
    "Users": {
        "PUT": {"schemas": [USER], "userName": "stolen@example.org", "active": False},
        "PATCH": patch_op({"op": "replace", "value": {"displayName": "Stolen"}}),
    },
    "Groups": {
        "PUT": {"schemas": [GROUP], "displayName": "Stolen", "members": []},
        "PATCH": patch_op({"op": "remove", "path": "members"}),
    },
}


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(("kind", "key"), [("Users", "ada"), ("Groups", "engine")])
def test_another_tenants_ids_are_unknown_to_its_token(scim, theirs, ours, kind, key, method):
    """B's IdP gets 404 for A's user and group; A reads both back exactly as before."""
    before = (fetch(scim, "Users", ours["ada"]), fetch(scim, "Groups", ours["engine"]))
    body = WRITES[kind].get(method)

    response = theirs(method, f"/{kind}/{ours[key]}", json=body)

    assert_scim_error(response, 404)
    assert (fetch(scim, "Users", ours["ada"]), fetch(scim, "Groups", ours["engine"])) == before
    assert before[1]["members"][0]["value"] == ours["ada"]


# --- A token on the other tenant's URL: 401 everywhere ----------------------------------

ENDPOINTS = [
    ("GET", "/Users", None),
    ("POST", "/Users", {"schemas": [USER], "userName": "new@example.org", "active": False}),
    ("GET", "/Users/{ada}", None),
    ("PUT", "/Users/{ada}", WRITES["Users"]["PUT"]),
    ("PATCH", "/Users/{ada}", WRITES["Users"]["PATCH"]),
    ("DELETE", "/Users/{ada}", None),
    ("POST", "/Users/.search", {"schemas": [SEARCH]}),
    ("GET", "/Groups", None),
    ("POST", "/Groups", {"schemas": [GROUP], "displayName": "New", "members": []}),
    ("GET", "/Groups/{engine}", None),
    ("PUT", "/Groups/{engine}", WRITES["Groups"]["PUT"]),
    ("PATCH", "/Groups/{engine}", WRITES["Groups"]["PATCH"]),
    ("DELETE", "/Groups/{engine}", None),
    ("POST", "/Groups/.search", {"schemas": [SEARCH]}),
    ("POST", "/.search", {"schemas": [SEARCH]}),
    ("GET", "/ServiceProviderConfig", None),
    ("GET", "/ResourceTypes", None),
    ("GET", "/Schemas", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_a_valid_token_on_the_other_tenants_url_is_401(
    scim, theirs, ours, their, method, path, body
):
    """Each token works only on its own connector's URL, both ways; neither tenant changes."""
    before = (everything(scim), everything(theirs))
    b_ids = {"ada": their["bob"], "engine": their["team"]}  # B's ids at B's URL

    b_on_a = scim(method, path.format(**ours), token=theirs.issued.token, json=body)
    a_on_b = theirs(method, path.format(**b_ids), token=scim.issued.token, json=body)

    assert_401(b_on_a)
    assert_401(a_on_b)
    assert (everything(scim), everything(theirs)) == before


# --- Filters, searches, sorting and paging by B: none of A's resources ------------------

USER_FILTERS = [
    'userName eq "ada@example.com"',
    'externalId eq "ext-ada"',
    'id eq "{ada}"',
    'emails.value eq "ada@example.com"',
    'displayName eq "Ada Lovelace"',
]
GROUP_FILTERS = [
    'displayName eq "Analytical Engine"',
    'externalId eq "ext-engine"',
    'id eq "{engine}"',
    'members.value eq "{ada}"',
]
LOOKUPS = [
    (where, text)
    for filters, places in ((USER_FILTERS, "Users"), (GROUP_FILTERS, "Groups"))
    for text in filters
    for where in (f"GET /{places}", f"POST /{places}/.search", "POST /.search")
]


def look_up(idp: Scim, where: str, query: dict) -> dict:
    method, path = where.split()
    if method == "GET":
        return ok(idp("GET", path, query_string=query))
    return ok(idp("POST", path, json={"schemas": [SEARCH], **query}))


@pytest.mark.parametrize(("where", "text"), LOOKUPS)
def test_filters_by_another_tenant_never_find_our_resources(scim, theirs, ours, their, where, text):
    """B's IdP looking for A's names, ids and emails finds nothing; A's own IdP finds them."""
    query = {"filter": text.format(**ours)}

    assert look_up(scim, where, query)["totalResults"] == 1  # the filter does match A's
    found = look_up(theirs, where, query)

    assert (found["totalResults"], found.get("Resources", [])) == (0, [])


PAGES = [
    ("GET /Users", {"sortBy": "userName"}, ("alan", "bob", "zoe")),
    ("GET /Users", {"sortBy": "userName", "sortOrder": "descending"}, ("zoe", "bob", "alan")),
    ("POST /Users/.search", {"sortBy": "emails.value"}, ("alan", "bob", "zoe")),
    ("GET /Groups", {"sortBy": "displayName"}, ("board", "team")),
    (
        "POST /Groups/.search",
        {"sortBy": "displayName", "sortOrder": "descending"},
        ("team", "board"),
    ),
    ("POST /.search", {"sortBy": "userName"}, ("alan", "bob", "zoe", "team", "board")),
]


@pytest.mark.parametrize(("where", "query", "expected"), PAGES)
def test_another_tenants_sorted_and_paged_lists_hold_only_its_own(
    scim, theirs, ours, their, where, query, expected
):
    """Whole lists (count=200) and one-by-one pages show B exactly its own, in order."""
    whole = look_up(theirs, where, query | {"count": 200})
    pages = [
        look_up(theirs, where, query | {"startIndex": start, "count": 1})
        for start in range(1, len(expected) + 2)
    ]

    wanted = [their[name] for name in expected]
    assert (whole["totalResults"], listed_ids(whole)) == (len(expected), wanted)
    assert [listed_ids(page) for page in pages] == [[i] for i in wanted] + [[]]
    assert {page["totalResults"] for page in pages} == {len(expected)}
    assert not set(ours.values()) & {i for page in pages for i in listed_ids(page)}


# --- References resolve only inside the connector's account -----------------------------


def manager_write(method: str, idp: Scim, user: str, manager: str):
    reference = {"manager": {"value": manager}}
    if method == "PATCH":
        operation = {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": manager}}
        return idp("PATCH", f"/Users/{user}", json=patch_op(operation))
    body = {"schemas": [USER, ENTERPRISE], "userName": f"reports-to-{manager}", "active": False}
    path = "/Users" if method == "POST" else f"/Users/{user}"
    return idp(method, path, json=body | {ENTERPRISE: reference})


@pytest.mark.parametrize(("method", "status"), [("POST", 201), ("PUT", 200), ("PATCH", 200)])
def test_a_manager_from_another_tenant_is_kept_without_a_ref(
    scim, theirs, ours, their, method, status
):
    """B may name A's user as manager: kept as sent, never linked; B's own manager is."""
    before = fetch(scim, "Users", ours["ada"])

    foreign = ok(manager_write(method, theirs, their["bob"], ours["ada"]), status)
    own = ok(manager_write(method, theirs, their["alan"], their["zoe"]), status)

    ref = f"{theirs.base}/Users/{their['zoe']}"
    listing = ok(theirs("GET", "/Users", query_string={"count": 200}))["Resources"]
    listed = {user["id"]: user for user in listing}
    for user, manager in (
        (foreign, {"value": ours["ada"]}),  # as sent: no `$ref` to another tenant's user
        (own, {"value": their["zoe"], "$ref": ref}),
    ):
        for body in (user, fetch(theirs, "Users", user["id"]), listed[user["id"]]):
            assert body[ENTERPRISE]["manager"] == manager
    assert fetch(scim, "Users", ours["ada"]) == before


def members_write(write: str, theirs: Scim, group: str, members: list[str]):
    listed = [{"value": m} for m in members]
    if write == "POST":
        body = {"schemas": [GROUP], "displayName": "Poached", "members": listed}
        return theirs("POST", "/Groups", json=body)
    if write == "PUT":
        body = {"schemas": [GROUP], "displayName": "Team", "members": listed}
        return theirs("PUT", f"/Groups/{group}", json=body)
    operations = {
        "PATCH add": {"op": "add", "path": "members", "value": listed},
        "PATCH replace": {"op": "replace", "path": "members", "value": listed},
        "PATCH add without a path": {"op": "add", "value": {"members": listed}},
        "PATCH remove by filter": {"op": "remove", "path": f'members[value eq "{members[0]}"]'},
        "PATCH remove by value": {"op": "remove", "path": "members", "value": listed[:1]},
    }
    return theirs("PATCH", f"/Groups/{group}", json=patch_op(operations[write]))


@pytest.mark.parametrize(
    ("write", "status", "expected"),
    [
        ("POST", 201, {"bob"}),
        ("PUT", 200, {"bob"}),
        ("PATCH add", 204, {"zoe", "bob"}),
        ("PATCH replace", 204, {"bob"}),
        ("PATCH add without a path", 204, {"zoe", "bob"}),
        ("PATCH remove by filter", 204, {"zoe"}),
        ("PATCH remove by value", 204, {"zoe"}),
    ],
)
def test_group_members_from_another_tenant_are_skipped(
    scim, theirs, ours, their, write, status, expected
):
    """A's user ids in B's group writes are skipped; B's own user is applied, A unchanged."""
    before = (fetch(scim, "Users", ours["ada"]), fetch(scim, "Groups", ours["engine"]))

    response = members_write(write, theirs, their["team"], [ours["ada"], their["bob"]])

    ok(response, status)
    group = response.get_json()["id"] if write == "POST" else their["team"]
    members = {m["value"] for m in fetch(theirs, "Groups", group).get("members", [])}
    assert members == {their[name] for name in expected}
    assert (fetch(scim, "Users", ours["ada"]), fetch(scim, "Groups", ours["engine"])) == before
    assert [g["value"] for g in before[0]["groups"]] == [ours["engine"]]


# --- Throttling: B's failures never hold up A's valid requests --------------------------

HERE = {"REMOTE_ADDR": "192.0.2.10"}  # one IdP egress address for both tenants


@pytest.mark.parametrize("config_overrides", [{"SCIM_FAILED_AUTH_LIMIT": "3/10 seconds"}])
@pytest.mark.parametrize("target", ["B's URL, a wrong token", "A's URL, B's token"])
def test_another_tenants_failures_never_throttle_our_valid_requests(
    scim, theirs, ours, their, target
):
    """From one address, B's failing IdP gets 429; A's IdP there, and B's once its token
    is right, are served as usual."""
    failing, token = (theirs, "scim_wrong") if target[0] == "B" else (scim, theirs.issued.token)
    before = (everything(scim), everything(theirs))
    new = {"schemas": [USER], "userName": "flood@example.org", "active": False}

    def send(idp, method, path, **kwargs):
        return idp(method, path, environ_base=HERE, **kwargs)

    statuses = [send(failing, "POST", "/Users", token=token, json=new).status_code]
    while statuses[-1] == 401 and len(statuses) < 20:
        statuses.append(send(failing, "GET", "/Users", token=token).status_code)
    refused = assert_scim_error(send(failing, "DELETE", f"/Users/{ours['ada']}", token=token), 429)
    served = [send(scim, "GET", f"/{kind}/{ours[key]}") for kind, key in ITEMS]
    served += [send(scim, "GET", path) for path in ("/Users", "/Groups", "/ServiceProviderConfig")]
    served += [send(scim, "POST", path, json={"schemas": [SEARCH]}) for path in SEARCHES]
    served += [send(theirs, "GET", "/Users"), send(theirs, "GET", f"/Users/{their['bob']}")]

    assert statuses == [401, 401, 401, 429]
    assert "failed authentications" in refused["detail"]
    assert [r.status_code for r in served] == [200] * 10
    assert (everything(scim), everything(theirs)) == before
    assert ok(send(scim, "POST", "/Users", json=new), 201)["userName"] == new["userName"]
    assert ok(send(theirs, "POST", "/Users", json=new), 201)["userName"] == new["userName"]


ITEMS = (("Users", "ada"), ("Groups", "engine"))
SEARCHES = ("/Users/.search", "/Groups/.search", "/.search")
