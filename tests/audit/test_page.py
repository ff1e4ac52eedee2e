"""The Audit log page (SPEC F10): owners and co-owners see their account's events, newest
first, filtered by actor, action, resource, time range and free text, in keyset pages
that neither repeat nor skip an event; a detail view per event; CSV and JSON Lines
exports of the filtered events; another account's events never."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, insert

from blueprints.audit import services
from models import AuditEvent
from tests import factories

PAGE = "/enterprise/audit"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/enterprise/audit"}
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ROW = re.compile(r'<tr id="event-(\d+)">')


def shown(response) -> list[int]:
    """The event ids on a page (or fragment), in the order shown."""
    assert response.status_code in (200, 422), response.get_data(as_text=True)[-2000:]
    return [int(i) for i in ROW.findall(response.get_data(as_text=True))]


def add_events(session, account, rows: list[dict]) -> list[int]:
    """Insert events as the app writes them (ids increasing with time); their ids."""
    ids = []
    for row in rows:
        values = {"account_id": account.id, "action": "domain.added"} | row
        ids.append(session.execute(insert(AuditEvent).values(**values)).inserted_primary_key[0])
    session.commit()
    return ids


@pytest.fixture
def as_owner(as_owner, session, account):
    """The owner, signed in, and the account's log empty again (the sign-in is in it)."""
    session.execute(delete(AuditEvent).where(AuditEvent.account_id == account.id))
    session.commit()
    return as_owner


@pytest.fixture
def other_account(session):
    other = factories.make_account(session, name="Other Inc")
    factories.make_user(session, other, "owner@example.org", role="owner", passphrase=None)
    return other


@pytest.fixture
def history(session, account, owner, other_account):
    """Six events of the account over six days (two actors), and one of another account."""
    ada = factories.make_user(session, account, "ada@example.com", role="co-owner")
    rows = [
        {"action": "domain.added", "target": "domain:example.com", "actor_user_id": owner.id},
        {"action": "domain.verified", "target": "domain:example.com", "actor_user_id": None},
        {"action": "sso.enabled", "actor_user_id": ada.id, "remote_addr": "203.0.113.9"},
        {
            "action": "member.deactivate",
            "target": "member:linus@example.com",
            "actor_user_id": owner.id,
            "detail": {"changes": {"active": [True, False]}},
        },
        {"action": "scim.token_revealed", "actor_user_id": ada.id},
        {"action": "domain.added", "target": "domain:acme.test", "actor_user_id": ada.id},
    ]
    for day, row in enumerate(rows):
        row["created_at"] = START + timedelta(days=day)
    ids = add_events(session, account, rows)
    add_events(
        session,
        other_account,
        [{"action": "domain.added", "target": "domain:secret.test", "created_at": START}],
    )
    return ids


def test_only_owners_and_co_owners_see_the_audit_log(client, session, account, login_as):
    member = factories.make_user(session, account, "m@example.com", role="member")
    login_as(member)

    assert client.get(PAGE).status_code == 403
    assert client.get(f"{PAGE}/export.csv").status_code == 403


def test_the_page_lists_the_accounts_events_newest_first_never_anothers(as_owner, history):
    response = as_owner.get(PAGE)

    page = response.get_data(as_text=True)
    assert shown(response) == list(reversed(history))
    assert "secret.test" not in page
    assert "Domain verified" in page and "SSO enabled" in page  # labels, not codes
    assert "ada@example.com" in page and "System" in page  # actor; a job's event
    assert 'href="/enterprise/audit"' in page  # in the navigation


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"action": "domain.added"}, [5, 0]),
        ({"actor": "ADA@example.com"}, [5, 4, 2]),
        ({"resource": "example.com"}, [3, 1, 0]),
        ({"q": "203.0.113"}, [2]),
        ({"q": "false"}, [3]),  # in the detail
        ({"since": "2026-03-03", "until": "2026-03-04"}, [3, 2]),
        ({"since": "2026-03-06"}, [5]),
        ({"actor": "nobody@example.com"}, []),
        ({"q": "100%_"}, []),  # LIKE wildcards are text
    ],
)
def test_filters_narrow_the_list(as_owner, history, args, expected):
    response = as_owner.get(PAGE, query_string=args)

    assert shown(response) == [history[i] for i in expected]


def test_the_search_finds_non_ascii_text_in_the_detail(as_owner, session, account):
    [renamed] = add_events(
        session,
        account,
        [{"action": "scim.user_updated", "detail": {"changes": {"name": ["Zoe", "Zoë Ødegård"]}}}],
    )

    assert shown(as_owner.get(PAGE, query_string={"q": "Zoë Ø"})) == [renamed]


def test_a_filter_fragment_pushes_its_canonical_url(as_owner, history):
    response = as_owner.get(
        PAGE, query_string={"action": "domain.added", "q": "", "since": ""}, headers=HTMX
    )

    page = response.get_data(as_text=True)
    assert "<html" not in page and page.lstrip().startswith('<div id="audit-results"')
    assert response.headers["HX-Push-Url"] == "/enterprise/audit?action=domain.added"
    assert "HX-Request" in response.headers["Vary"]


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        ({"since": "03/01/2026"}, "since", "Enter a date as YYYY-MM-DD."),
        ({"since": "2026-03-05", "until": "2026-03-01"}, "until", "before its start"),
        ({"action": "drop.tables"}, "action", "Choose an action from the list."),
        ({"q": "x" * 201}, "q", "At most 200 characters."),
    ],
)
def test_a_bad_filter_is_an_error_next_to_its_field(as_owner, history, args, field, message):
    """The page shows the error under the field (which points at it); an htmx answer
    swaps the results and sends the error out of band, leaving the field being typed in
    alone. Nothing is filtered by a value refused."""
    error = (
        rf'<p class="error" id="audit-{field}-error" role="alert"( hx-swap-oob="true")?>([^<]*)<'
    )

    page = as_owner.get(PAGE, query_string=args)
    fragment = as_owner.get(PAGE, query_string=args, headers=HTMX)

    assert (page.status_code, fragment.status_code) == (422, 422)
    text = page.get_data(as_text=True)
    assert message in re.search(error, text).group(2)
    field_tag = re.search(rf'<(input|select) [^>]*id="audit-{field}"[^>]*>', text).group(0)
    assert 'aria-invalid="true"' in field_tag
    assert f'aria-describedby="audit-{field}-error"' in field_tag
    oob = re.search(error, fragment.get_data(as_text=True))
    assert oob.group(1) and message in oob.group(2)
    assert 'id="audit-filters"' not in fragment.get_data(as_text=True)


def test_a_fixed_filter_clears_its_error_out_of_band(as_owner, history):
    fragment = as_owner.get(PAGE, query_string={"since": "2026-03-02"}, headers=HTMX)

    text = fragment.get_data(as_text=True)
    assert (
        '<p class="error" id="audit-since-error" role="alert" hidden hx-swap-oob="true"></p>'
        in text
    )
    assert fragment.status_code == 200


def test_keyset_pages_neither_repeat_nor_skip_events(as_owner, session, account, owner):
    """120 events, some sharing a timestamp, read page by page down (Older) and back up
    (Newer): every event once, in order, and events added meanwhile don't shift pages."""
    moments = [START + timedelta(seconds=i // 3) for i in range(120)]  # three per second
    ids = add_events(
        session, account, [{"created_at": m, "actor_user_id": owner.id} for m in moments]
    )
    seen, args = [], {}
    while True:
        response = as_owner.get(PAGE, query_string=args)
        seen += shown(response)
        older = re.search(
            r'href="/enterprise/audit\?before=([0-9.]+)"', response.get_data(as_text=True)
        )
        if older is None:
            break
        if len(seen) == services.PAGE_SIZE:  # a newer event arrives while reading
            add_events(session, account, [{"created_at": START + timedelta(days=9)}])
        args = {"before": older.group(1)}
    assert seen == list(reversed(ids))

    page = as_owner.get(PAGE, query_string=args).get_data(as_text=True)
    newer = re.search(r'href="/enterprise/audit\?after=([0-9.]+)"', page).group(1)
    back = shown(as_owner.get(PAGE, query_string={"after": newer}))
    assert back == list(reversed(ids))[services.PAGE_SIZE : 2 * services.PAGE_SIZE]


def test_the_detail_view_shows_what_changed(as_owner, history):
    page = as_owner.get(f"{PAGE}/{history[3]}").get_data(as_text=True)

    assert "<h1>Member deactivated</h1>" in page
    assert "member:linus@example.com" in page
    changes = re.search(r'<table class="table" id="audit-changes">(.*?)</table>', page, re.S)
    assert "<td>active</td><td>true</td><td>false</td>" in changes.group(1)


def test_another_accounts_event_is_404(as_owner, session, other_account):
    [theirs] = add_events(session, other_account, [{"created_at": START}])

    assert as_owner.get(f"{PAGE}/{theirs}").status_code == 404
    assert as_owner.get(f"{PAGE}/99999999999").status_code == 404


def test_csv_export_follows_the_filters_and_defuses_formulas(as_owner, session, account, history):
    [formula] = add_events(
        session,
        account,
        [{"action": "domain.added", "target": '=HYPERLINK("http://x")', "created_at": START}],
    )

    response = as_owner.get(f"{PAGE}/export.csv", query_string={"action": "domain.added"})

    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["id", "time", "actor", "action", "resource", "address", "detail"]
    # Newest first; the two of the same moment, the later written first.
    assert [int(r[0]) for r in rows[1:]] == [history[5], formula, history[0]]
    assert rows[1][2:5] == ["ada@example.com", "domain.added", "domain:acme.test"]
    assert rows[2][4].startswith("'=")  # a spreadsheet shows it as text, never runs it


def test_json_lines_export_is_one_event_per_line(as_owner, history):
    response = as_owner.get(f"{PAGE}/export.jsonl", query_string={"actor": "ada@example.com"})

    lines = response.get_data(as_text=True).splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [history[5], history[4], history[2]]
    assert records[2]["address"] == "203.0.113.9"
    assert records[2]["time"] == "2026-03-03T09:00:00Z"
    assert all("secret.test" not in line for line in lines)
