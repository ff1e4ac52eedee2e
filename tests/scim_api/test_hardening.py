"""What 22,000 adversarial requests found (issue "SCIM API hardening"), one test per
class: each failed on the code before the fix.

- a list is one consistent read, even while other requests delete what it lists;
- a filter too complex for the database is 400 invalidFilter, not 503 "busy" (an IdP
  that honours Retry-After would retry it forever); only transient errors are 503;
- bodies: a member without a value is 400, a chunked body over the limit is 413, a 413
  closes the connection it can't go on reading, `attributes` is capped and linear;
- an error body has no empty scimType.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from sqlalchemy.exc import OperationalError

from blueprints.scim_api import errors
from blueprints.scim_api.filters import MAX_FILTER_TERMS
from blueprints.scim_api.query import MAX_ATTRIBUTE_PATHS
from models import Membership
from tests.conftest import gunicorn
from tests.scim_api.conftest import assert_scim_error, provision

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


# --- 1. A list is one consistent read ------------------------------------------------------


def test_pages_listed_while_other_requests_delete_users_are_never_a_500(app, live_server, issued):
    """Four clients list users (users pages, filtered pages, the root .search, groups)
    while two others delete them one by one: every answer is a 200 whose total is what it
    lists (one consistent read), or a clean SCIM error; none is a 500."""
    base = f"{live_server}/scim/v2/{issued.connector.public_id}"
    headers = {"Authorization": f"Bearer {issued.token}", "Content-Type": "application/scim+json"}
    with requests.Session() as s:

        def created(path: str, body: dict) -> str:
            response = s.post(f"{base}{path}", json=body, headers=headers)
            assert response.status_code == 201, response.text[:300]
            return response.json()["id"]

        user = {"schemas": [USER], "active": False}  # no seat: the account has few
        ids = [created("/Users", user | {"userName": f"d{i}"}) for i in range(120)]
        members = [{"value": v} for v in ids]
        created("/Groups", {"schemas": [GROUP], "displayName": "All", "members": members})
    statuses: list[int] = []
    failures: list[str] = []
    done = threading.Event()

    def delete(mine: list[str]) -> None:
        with requests.Session() as s:
            for scim_id in mine:
                s.delete(f"{base}/Users/{scim_id}", headers=headers)
        done.set()

    def read(kind: str) -> None:
        """Whole lists (count=200 holds them all): the total must be what is listed."""
        with requests.Session() as s:
            while not done.is_set():
                if kind == "search":
                    r = s.post(f"{base}/.search", json={"count": 200}, headers=headers)
                else:
                    params = {"count": 200}
                    if kind == "filtered":
                        params["filter"] = 'userName sw "d"'
                    path = "/Groups" if kind == "groups" else "/Users"
                    r = s.get(f"{base}{path}", params=params, headers=headers)
                statuses.append(r.status_code)
                if r.status_code >= 500:
                    failures.append(r.text[:300])
                elif r.status_code == 200:
                    listed = r.json()
                    resources = listed.get("Resources", [])
                    if len(resources) != listed["totalResults"]:
                        failures.append(f"{kind}: {listed['totalResults']} for {len(resources)}")
                    failures.extend(f"no id: {x}" for x in resources if "id" not in x)

    threads = [threading.Thread(target=delete, args=(ids[i::2],)) for i in range(2)]
    threads += [
        threading.Thread(target=read, args=(kind,))
        for kind in ("users", "filtered", "search", "groups")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not failures, failures[:3]
    assert statuses.count(200) >= 4


# --- 2. Too complex is 400; only transient errors are 503 ------------------------------------


def test_a_filter_of_a_thousand_terms_is_400_invalid_filter_before_any_sql(scim):
    terms = " or ".join(f'userName eq "u{i}@x.test"' for i in range(1000))

    body = assert_scim_error(scim("GET", "/Users", query_string={"filter": terms}), 400)

    assert body["scimType"] == "invalidFilter"
    assert str(MAX_FILTER_TERMS) in body["detail"]


def test_a_filter_at_the_term_limit_is_served(scim):
    provision(scim, "u3@x.test")
    terms = " or ".join(f'userName eq "u{i}@x.test"' for i in range(MAX_FILTER_TERMS))

    response = scim("GET", "/Users", query_string={"filter": terms})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["totalResults"] == 1


@pytest.mark.parametrize(
    "filter_",
    [
        # and/or alternating in parentheses: each level a node (redundant parentheses
        # alone are flattened by the parser, and served).
        "".join(f'(userName eq "u{i}" {"and" if i % 2 else "or"} ' for i in range(60))
        + 'userName eq "a"'
        + ")" * 60,
        "not (" * 150 + 'userName eq "a"' + ")" * 150,
        'emails[value eq "a" or ' * 60 + 'value eq "b"' + "]" * 60,
    ],
    ids=["parentheses", "nots", "value-paths"],
)
def test_deeply_nested_filters_are_400_invalid_filter(scim, filter_):
    for path in ("/Users", "/Groups"):
        body = assert_scim_error(scim("GET", path, query_string={"filter": filter_}), 400)
        assert body["scimType"] == "invalidFilter"
    body = assert_scim_error(scim("POST", "/.search", json={"filter": filter_}), 400)
    assert body["scimType"] == "invalidFilter"


def _operational(message: str, orig: Exception | None = None) -> OperationalError:
    return OperationalError("SELECT 1", {}, orig or Exception(message))


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("database is locked", 503),
        ("server closed the connection unexpectedly", 503),
        ("could not connect to server: Connection refused", 503),
        ("canceling statement due to lock timeout", 503),
        ("deadlock detected", 503),
        ("Expression tree is too large (maximum depth 1000)", 400),
        ("too many SQL variables", 400),
        ("parser stack overflow", 400),
        ("stack depth limit exceeded", 400),
        ("no such column: membership.frobnicate", 500),
        ("disk I/O error", 500),
    ],
)
def test_only_transient_database_errors_are_503(app, message, status):
    """A lock or a lost connection passes: 503 with Retry-After. A statement too complex
    for the database never will: 400 saying so. Anything else is our fault: 500, never
    "retry shortly" (an IdP would retry it forever)."""
    with app.test_request_context("/scim/v2/x/Users?filter=x"):
        response = errors.from_exception(_operational(message))

    assert response.status_code == status
    body = response.get_json()
    assert body["status"] == str(status)
    if status == 503:
        assert response.headers["Retry-After"] == "1"
    else:
        assert "Retry-After" not in response.headers
    if status == 400:
        assert body["scimType"] == "invalidFilter"


def test_a_dropped_connection_is_still_503(app):
    error = _operational("terminating connection due to administrator command")
    error.connection_invalidated = True
    with app.test_request_context("/scim/v2/x/Users"):
        assert errors.from_exception(error).status_code == 503


# --- 5. Odd bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "member",
    [{"value": None}, {}, {"display": "Ada"}, {"value": ""}, {"value": 7}, "x", None],
    ids=["null", "empty", "no-value", "blank", "number", "string", "none"],
)
def test_a_member_without_a_usable_value_is_400_and_nothing_is_written(scim, session, member):
    ada = provision(scim, "ada@x.test")
    group = {"schemas": [GROUP], "displayName": "Team", "members": [{"value": ada["id"]}, member]}

    assert_scim_error(scim("POST", "/Groups", json=group), 400)
    assert scim("GET", "/Groups").get_json()["totalResults"] == 0

    created = scim("POST", "/Groups", json={"schemas": [GROUP], "displayName": "Team"})
    team = created.get_json()
    add = {
        "schemas": [PATCH],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": ada["id"]}, member]}],
    }
    assert_scim_error(scim("PATCH", f"/Groups/{team['id']}", json=add), 400)
    replace = dict(group, id=team["id"])
    assert_scim_error(scim("PUT", f"/Groups/{team['id']}", json=replace), 400)
    after = scim("GET", f"/Groups/{team['id']}").get_json()
    assert after.get("members", []) == []
    assert after["meta"]["version"] == team["meta"]["version"]


def test_attributes_past_the_cap_are_400_and_the_cap_is_served_fast(scim):
    user = {"schemas": [USER], "userName": "ada", "emails": [{"value": "ada@x.test"}]}
    assert scim("POST", "/Users", json=user).status_code == 201
    many = ",".join(f"name.givenName{i}" for i in range(5000))

    body = assert_scim_error(scim("GET", "/Users", query_string={"attributes": many}), 400)
    assert str(MAX_ATTRIBUTE_PATHS) in body["detail"]
    body = assert_scim_error(scim("GET", "/Users", query_string={"excludedAttributes": many}), 400)

    at_cap = ",".join(["userName"] * (MAX_ATTRIBUTE_PATHS - 1) + ["emails.value"])
    started = time.perf_counter()
    response = scim("GET", "/Users", query_string={"attributes": at_cap})
    assert response.status_code == 200
    assert time.perf_counter() - started < 1.0  # was 2.8 s for 5,000
    assert set(response.get_json()["Resources"][0]) == {"id", "schemas", "userName", "emails"}


def test_an_error_body_has_no_empty_scim_type(scim):
    for response in (
        scim("GET", "/Users/no-such-id"),
        scim("GET", "/Groups/no-such-id"),
        scim("DELETE", "/Users/no-such-id"),
        scim("GET", "/Nothing"),
    ):
        body = assert_scim_error(response, 404)
        assert "scimType" not in body


# --- 5. Bodies over the limit, through a real HTTP server ------------------------------------


def test_a_chunked_body_over_the_limit_is_413_not_invalid_json(gunicorn_server, issued):
    """A body sent in chunks has no Content-Length to check up front: reading past the
    limit is a 413 like any other, not a truncated body refused as "not valid JSON"."""
    url = f"{gunicorn_server}/scim/v2/{issued.connector.public_id}/Users"
    start = b'{"schemas": ["' + USER.encode() + b'"], "userName": "'

    def chunks():  # no Content-Length: Transfer-Encoding: chunked
        yield start
        for _ in range(10):
            yield b"a" * 1000
        yield b'@x.test"}'

    response = requests.post(url, data=chunks(), headers=_headers(issued), timeout=30)

    assert_scim_error(_like_flask(response), 413)
    small = requests.post(
        url, data=iter([start, b'ada@x.test"}']), headers=_headers(issued), timeout=30
    )
    assert small.status_code == 201, small.text


def _headers(issued) -> dict:
    return {"Authorization": f"Bearer {issued.token}", "Content-Type": "application/scim+json"}


def _like_flask(response: requests.Response):
    """A requests response read like a Flask test response (for assert_scim_error)."""

    class Like:
        status_code = response.status_code
        mimetype = response.headers.get("Content-Type", "").split(";")[0]

        @staticmethod
        def get_data(as_text=False):
            return response.text if as_text else response.content

        @staticmethod
        def get_json(force=False):
            return response.json()

    return Like()


def _raw_exchange(port: int, requests_bytes: bytes, reads: int) -> list[bytes]:
    """Send raw bytes on one connection; return what came back, one recv per read until
    the server closes or `reads` answers are in."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(requests_bytes)
        buffer = b""
        while len(answers) < reads:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            buffer += data
            while b"HTTP/1.1 " in buffer[1:] or (buffer and len(answers) < reads):
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    break
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                if len(rest) < length:
                    break
                answers.append(head + sep + rest[:length])
                buffer = rest[length:]
    return answers


@pytest.fixture
def gunicorn_server(database_url, app, issued):
    """The app under gunicorn (how it is deployed), on the test's database."""
    with gunicorn(database_url, {"MAX_CONTENT_LENGTH": "2000"}) as base:
        yield base


def test_after_a_413_the_connection_is_closed_or_the_next_request_is_served(
    gunicorn_server, issued
):
    """A 413 leaves the body unread: answering keep-alive and then reading the body as the
    next request broke the client's next request on that connection. Either the 413 says
    `Connection: close` and closes, or the next request on the connection is served."""
    port = int(gunicorn_server.rsplit(":", 1)[1])
    path = f"/scim/v2/{issued.connector.public_id}"
    big = b"x" * 5000
    first = (
        f"POST {path}/Users HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {issued.token}\r\nContent-Type: application/scim+json\r\n"
        f"Content-Length: {len(big)}\r\n\r\n"
    ).encode() + big
    second = (
        f"GET {path}/ServiceProviderConfig HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {issued.token}\r\n\r\n"
    ).encode()

    answers = _raw_exchange(port, first + second, reads=2)

    assert answers and answers[0].startswith(b"HTTP/1.1 413"), answers[:1]
    head = answers[0].split(b"\r\n\r\n", 1)[0].lower()
    if b"connection: close" in head:
        assert len(answers) == 1
    else:
        assert len(answers) == 2 and answers[1].startswith(b"HTTP/1.1 200"), answers


def test_the_membership_is_unchanged_after_every_refused_body(scim, session):
    """A sample of the refused bodies above changes nothing already there."""
    ada = provision(scim, "ada@x.test")
    before = session.query(Membership).filter_by(scim_id=ada["id"]).one()
    version = before.version
    for body in (
        {"schemas": [USER], "userName": None},
        {"schemas": [USER], "userName": "ada@x.test", "active": "maybe"},
        {"schemas": [USER], "userName": "ada@x.test", "urn:x:y": {"a": 1}},
    ):
        assert scim("PUT", f"/Users/{ada['id']}", json=body).status_code == 400
    session.expire_all()
    assert session.get(Membership, before.id).version == version


# --- What a body's bytes may be ---------------------------------------------------------


def _raw(scim, data: bytes):
    return scim("POST", "/Users", data=data, headers={"Content-Type": "application/scim+json"})


def _count(session) -> int:
    session.expire_all()
    return session.query(Membership).count()


@pytest.mark.parametrize(
    "data",
    [
        # A surrogate encoded in UTF-8 bytes: Python's json.loads takes it (surrogatepass)
        # and it reached the database as a lone surrogate.
        b'{"schemas": ["' + USER.encode() + b'"], "userName": "ada\xed\xa0\x80"}',
        # UTF-16: json.loads detects it; RFC 8259 §8.1 says JSON between systems is UTF-8.
        ('{"schemas": ["' + USER + '"], "userName": "ada"}').encode("utf-16"),
        b'{"schemas": ["' + USER.encode() + b'"], "userName": "\xff\xfe"}',
    ],
    ids=["utf8-encoded-surrogate", "utf-16", "not-utf-8"],
)
def test_a_body_that_is_not_utf_8_is_400_and_changes_nothing(scim, session, data):
    before = _count(session)

    error = assert_scim_error(_raw(scim, data), 400)

    assert error["scimType"] == "invalidSyntax"
    assert error["detail"] == "The request body is not UTF-8 text."
    assert _count(session) == before


def test_a_utf_8_body_with_a_byte_order_mark_is_read(scim):
    """RFC 8259 §8.1: a parser MAY ignore a BOM; some Windows tools write one."""
    data = b"\xef\xbb\xbf" + ('{"schemas": ["' + USER + '"], "userName": "zoë"}').encode()

    response = _raw(scim, data)

    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["userName"] == "zoë"


@pytest.mark.parametrize(
    ("escaped", "stored"),
    [("\\u00e9", "é"), ("\\ud83d\\ude00", "😀"), ("\\\\u0000", "\\u0000")],
    ids=["accent", "surrogate-pair", "escaped-backslash"],
)
def test_escapes_that_make_storable_text_are_kept(scim, escaped, stored):
    """Only an escaped NUL or a lone surrogate is refused: an escaped accent, a surrogate
    pair (an emoji) and a backslash followed by "u0000" are text like any other."""
    data = ('{"schemas": ["' + USER + '"], "userName": "a' + escaped + '"}').encode()

    response = _raw(scim, data)

    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["userName"] == "a" + stored
