"""The limits on SCIM traffic (SPEC F5 "Too many requests", blueprints/scim_api/limits.py):
a well-behaved client is never refused, a burst of an IdP's usual parallelism is
absorbed, a flood is refused with an exact Retry-After, one connector never delays
another by more than a turn, failed authentications count per address and connector,
and with a shared store the limits hold across processes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from blueprints.scim_api import admission
from blueprints.scim_api.limits import FairGate, writers_per_process
from tests.conftest import free_port, gunicorn, redis_db
from tests.scim_api.conftest import Scim, assert_scim_error

SPC = "/ServiceProviderConfig"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def _limits(app):
    with app.test_request_context():
        return admission.limits()


# --- Never refused ------------------------------------------------------------------------


def test_a_client_sending_one_request_at_a_time_is_never_refused(scim):
    """2,000 requests back to back, at full speed, with the default settings: the
    conformance tools and IdPs that send one request at a time never see a 429."""
    statuses = []
    for n in range(2000):
        if n % 4 == 0:
            body = {"schemas": [USER], "userName": f"seq-{n}@example.com", "active": False}
            statuses.append(scim("POST", "/Users", json=body).status_code)
        elif n % 4 == 1:
            lookup = f'/Users?filter=userName eq "seq-{n - 1}@example.com"'
            statuses.append(scim("GET", lookup).status_code)
        else:
            statuses.append(scim("GET", SPC).status_code)

    assert 429 not in statuses
    assert set(statuses) == {200, 201}


def test_eight_parallel_clients_of_one_connector_are_all_served(scim, issued, live_server):
    """Entra ID provisions with about 10 connections at once, Okta about 5: within that
    parallelism nothing is refused, whatever the rate."""
    url = f"{live_server}{scim.base.removeprefix('http://localhost')}"
    headers = {"Authorization": f"Bearer {issued.token}"}
    start = threading.Barrier(8)

    def client(k: int) -> list[int]:
        with requests.Session() as http:
            start.wait()
            codes = []
            for n in range(40):
                if n % 2:
                    codes.append(http.get(f"{url}{SPC}", headers=headers, timeout=30).status_code)
                else:
                    body = {"schemas": [USER], "userName": f"par-{k}-{n}", "active": False}
                    codes.append(
                        http.post(
                            f"{url}/Users", json=body, headers=headers, timeout=30
                        ).status_code
                    )
            return codes

    with ThreadPoolExecutor(8) as pool:
        codes = [c for result in pool.map(client, range(8)) for c in result]

    assert sorted(set(codes)) == [200, 201]
    assert len(codes) == 320


# --- Refused, with an exact Retry-After --------------------------------------------------


@pytest.mark.parametrize(
    "config_overrides", [{"SCIM_FREE_PARALLELISM": 1, "SCIM_RATE_LIMIT": "3/10 seconds"}]
)
def test_past_its_parallelism_a_connector_is_held_to_its_rate(app, scim, other_issued):
    """With another request of the connector in flight, each new one counts against the
    rate; over it, 429 with the seconds until the moving window has room again."""
    limits = _limits(app)
    held, _ = limits.arrive(scim.issued.connector.public_id)  # one request in flight
    try:
        responses = [scim("GET", SPC) for _ in range(4)]
        theirs = Scim(scim.client, other_issued)("GET", SPC)
    finally:
        limits.leave(held)

    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    body = assert_scim_error(responses[3], 429)
    retry = int(responses[3].headers["Retry-After"])
    assert 9 <= retry <= 10  # the first of the 3 hits leaves the 10 s window in ~10 s
    assert f"Retry after {retry} second" in body["detail"]
    assert theirs.status_code == 200  # another connector's rate is its own
    # Alone again, the client is served whatever its rate.
    assert scim("GET", SPC).status_code == 200


@pytest.mark.parametrize("config_overrides", [{"SCIM_MAX_IN_FLIGHT": 3}])
def test_more_than_the_cap_in_flight_is_refused_at_once(app, scim, other_issued):
    limits = _limits(app)
    held = [limits.arrive(scim.issued.connector.public_id)[0] for _ in range(3)]
    try:
        refused = scim("GET", SPC)
        theirs = Scim(scim.client, other_issued)("GET", SPC)
    finally:
        for admission in held:
            limits.leave(admission)

    assert assert_scim_error(refused, 429)
    assert refused.headers["Retry-After"] == "1"
    assert theirs.status_code == 200
    assert scim("GET", SPC).status_code == 200  # the leases are given back


# --- Failed authentication --------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"SCIM_FAILED_AUTH_LIMIT": "2/10 seconds"}])
def test_failed_authentications_count_per_address_and_connector(scim, other_issued):
    """An IdP's egress address is shared by all its customers: one customer's bad token
    must not throttle another's provisioning, nor a valid token from the same address."""
    here = {"REMOTE_ADDR": "192.0.2.10"}
    elsewhere = {"REMOTE_ADDR": "192.0.2.20"}
    theirs = Scim(scim.client, other_issued)

    wrong = [scim("GET", SPC, token="scim_wrong", environ_base=here) for _ in range(3)]
    valid_here = scim("GET", SPC, environ_base=here)
    wrong_elsewhere = scim("GET", SPC, token="scim_wrong", environ_base=elsewhere)
    wrong_other_connector = theirs("GET", SPC, token="scim_wrong", environ_base=here)
    valid_other_connector = theirs("GET", SPC, environ_base=here)

    assert [r.status_code for r in wrong] == [401, 401, 429]
    body = assert_scim_error(wrong[2], 429)
    assert 9 <= int(wrong[2].headers["Retry-After"]) <= 10
    assert "failed authentications" in body["detail"]
    assert valid_here.status_code == 200
    assert wrong_elsewhere.status_code == 401
    assert wrong_other_connector.status_code == 401
    assert valid_other_connector.status_code == 200


# --- Turns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "setting", "slots"),
    [
        ("sqlite:///x.db", None, 1),  # one writer in the file at a time anyway
        ("postgresql+psycopg://h/db", None, 4),  # row locks: creates overlap
        ("postgresql+psycopg://h/db", 2, 2),  # a setting wins
        ("sqlite:///x.db", 0, 0),  # 0: every thread in
    ],
)
def test_writers_per_process_follow_the_database_unless_set(uri, setting, slots):
    config = {"SQLALCHEMY_DATABASE_URI": uri, "SCIM_WRITERS_PER_PROCESS": setting}
    assert writers_per_process(config) == slots


def test_fair_gate_lets_connectors_in_by_turns():
    """One connector's queue delays another's request by at most one turn."""
    gate = FairGate(1)
    assert gate.enter("holder", 1)
    order: list[str] = []

    def request(key: str) -> None:
        assert gate.enter(key, 5)
        order.append(key)
        gate.leave()

    threads = []
    for key in ["a1", "a2", "a3", "b1", "c1", "a4", "b2"]:
        connector = key[0]
        thread = threading.Thread(target=request, args=(connector,))
        thread.start()
        threads.append(thread)
        while sum(gate.waiting().values()) < len(threads):
            time.sleep(0.001)
    gate.leave()  # the holder is done
    for thread in threads:
        thread.join(5)

    assert order == ["a", "b", "c", "a", "b", "a", "a"]


def test_fair_gate_wait_ends_after_its_timeout_and_frees_its_place():
    gate = FairGate(1)
    assert gate.enter("x", 1)

    assert gate.enter("y", 0.05) is False
    assert gate.waiting() == {}
    gate.leave()
    assert gate.enter("y", 0.05) is True


@pytest.mark.parametrize("config_overrides", [{"SCIM_READERS_PER_PROCESS": 1}])
def test_a_flooding_connector_delays_another_by_one_turn_only(
    app, scim, other_issued, live_server, monkeypatch
):
    """Six queued requests of one connector, then one of another: the other is served
    second, not seventh (the order in which they are let in, which is the order they
    are served in, one at a time)."""
    reads = _limits(app).reads
    assert reads.enter("test", 1)  # the process is busy with one request
    served: list[str] = []
    enter = reads.enter

    def recorded(key: str, timeout: float) -> bool:
        entered = enter(key, timeout)
        served.append(key)
        return entered

    monkeypatch.setattr(reads, "enter", recorded)
    ours, theirs = scim, Scim(scim.client, other_issued)
    answers: list[int] = []

    def get(url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        answers.append(requests.get(url, headers=headers, timeout=30).status_code)

    threads = []
    for client in [ours] * 6 + [theirs]:
        url = f"{live_server}{client.base.removeprefix('http://localhost')}{SPC}"
        threads.append(threading.Thread(target=get, args=(url, client.issued.token)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while sum(reads.waiting().values()) < len(threads):
            assert time.monotonic() < deadline, (reads.waiting(), answers)
            time.sleep(0.001)
    reads.leave()
    for thread in threads:
        thread.join(10)

    a, b = ours.issued.connector.public_id, theirs.issued.connector.public_id
    assert served == [a, b, a, a, a, a, a]
    assert answers == [200] * 7


NEW_USER = {"schemas": [USER], "userName": "queued@example.com"}
QUEUED = {"SCIM_WRITERS_PER_PROCESS": 1, "SCIM_QUEUE_WAIT_SECONDS": 0.2}


def _users(scim) -> int:
    return scim("GET", "/Users?count=0").get_json()["totalResults"]


@pytest.mark.parametrize("config_overrides", [QUEUED])
def test_write_waiting_too_long_for_its_turn_gets_503_and_changes_nothing(app, scim):
    """While another thread of the process writes, a write waits; past the wait it is a
    503 with Retry-After (the IdP retries), and reads are never held up by writes."""
    writes = _limits(app).writes
    assert writes.enter("elsewhere", 1)
    try:
        busy = scim("POST", "/Users", json=NEW_USER)
        read = scim("GET", SPC)
        search = scim(
            "POST",
            "/Users/.search",
            json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]},
        )
    finally:
        writes.leave()

    body = assert_scim_error(busy, 503)
    assert busy.headers["Retry-After"] == "1"
    assert "retry" in body["detail"]
    assert read.status_code == 200
    assert search.status_code == 200
    assert _users(scim) == 0
    assert scim("POST", "/Users", json=NEW_USER).status_code == 201


@pytest.mark.parametrize("config_overrides", [QUEUED])
def test_turns_are_given_back_after_errors(scim):
    """A refused write (bad body, unknown id, bad token) does not keep the process's
    turn: the next write goes straight in."""
    assert scim("POST", "/Users", json={"userName": 5}).status_code == 400
    assert scim("PATCH", "/Users/no-such-id", json={}).status_code == 404
    assert scim("DELETE", "/Users/no-such-id", token="scim_wrong").status_code == 401
    assert (
        scim("POST", "/Users", data=b"{not json", content_type="application/json").status_code
        == 400
    )

    assert scim("POST", "/Users", json=NEW_USER).status_code == 201
    assert _users(scim) == 1


@pytest.mark.parametrize(
    "config_overrides", [{"SCIM_LIMITS_STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0"}]
)
def test_an_unreachable_store_never_refuses_traffic(scim):
    """Redis down: the limits count in the process until it is back."""
    assert scim("GET", SPC).status_code == 200
    assert scim("POST", "/Users", json=NEW_USER).status_code == 201


# --- Across processes (a shared store) --------------------------------------------------


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "per-process"])
def test_two_gunicorn_processes_share_the_limits_through_redis(database_url, issued, shared):
    """Two gunicorn processes on one database (two instances, or two workers: each its
    own process), while a request of the connector is in flight in a third (a lease in
    Redis), so that each request arrives past the connector's parallelism (1 here) and
    counts against its rate. The first fills the window; with Redis configured the
    second sees that, and holds the connector to the rate; without, it counts in flight
    and in its window on its own, and lets the requests through."""
    client, uri = redis_db()
    env = {"SCIM_FREE_PARALLELISM": "1", "SCIM_RATE_LIMIT": "20/minute"}
    if shared:
        env["SCIM_LIMITS_STORAGE_URI"] = uri
    path = f"/scim/v2/{issued.connector.public_id}{SPC}"
    headers = {"Authorization": f"Bearer {issued.token}"}
    client.zadd(f"scim:in-flight:{issued.connector.public_id}", {"elsewhere": time.time() + 60})
    try:
        with gunicorn(database_url, env) as first_url, gunicorn(database_url, env) as second_url:
            counted = [
                requests.get(first_url + path, headers=headers, timeout=30).status_code
                for _ in range(20)
            ]
            second_answers = [
                requests.get(second_url + path, headers=headers, timeout=30) for _ in range(2)
            ]
    finally:
        client.flushdb()

    assert counted == [200] * 20  # within the rate
    if shared:
        assert [r.status_code for r in second_answers] == [429, 429]
        assert 1 <= int(second_answers[0].headers["Retry-After"]) <= 60
    else:
        assert [r.status_code for r in second_answers] == [200, 200]
