"""Unclaimed accounts (SPEC F13): a verified domain's people with an identity here and no
membership in the account; search, keyset pages, the streamed CSV, who may see it."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest

from blueprints.domains import unclaimed
from models import Membership, OutboxEmail, User, utcnow
from tests import factories
from tests.members.conftest import invited_member, scim_member

DOMAIN = "acme.test"


@pytest.fixture
def domain(session, account):
    return factories.make_domain(session, account, DOMAIN, verified=True)


def person(session, email: str, name: str | None = None, **extra) -> User:
    return factories.make_user(session, email=email, passphrase=None, display_name=name, **extra)


def listed(html: str) -> list[str]:
    """The emails in the table, in order."""
    return re.findall(r'<td class="email">([^<]*)</td>', html)


def page_of(client, domain, **args) -> str:
    response = client.get(f"/enterprise/domains/{domain.id}/unclaimed", query_string=args)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_lists_exactly_the_domains_non_members(session, account, owner, as_owner, client, domain):
    person(session, "zed@acme.test", "Zed Unclaimed")
    person(session, "Ann@Acme.TEST", "Ann Unclaimed")  # folded domain
    factories.make_user(session, account, "active@acme.test")
    factories.make_user(session, account, "off@acme.test", active=False)
    scim_member(session, account, "scim@acme.test")
    person(session, "inv@acme.test")
    invited_member(session, account, "inv@acme.test")  # invited, not joined yet
    person(session, "INV2@acme.test")
    invited_member(session, account, "inv2@acme.test")  # invited, other spelling
    person(session, "sub@eu.acme.test")  # a subdomain: not covered
    person(session, "out@other.test")
    other = factories.make_account(session, name="Other Corp")
    factories.make_user(session, other, "theirs@acme.test")  # unclaimed for us

    html = page_of(client, domain)

    assert listed(html) == ["Ann@Acme.TEST", "theirs@acme.test", "zed@acme.test"]
    assert "Ann Unclaimed" in html


def test_search_by_email_start_or_name(session, owner, as_owner, client, domain):
    person(session, "alice@acme.test", "Alice Martin")
    person(session, "bob@acme.test", "Bob Alison")
    person(session, "carol@acme.test", "Carol 50%_off")

    assert listed(page_of(client, domain, q="ALI")) == ["alice@acme.test", "bob@acme.test"]
    assert listed(page_of(client, domain, q="bob@")) == ["bob@acme.test"]
    assert listed(page_of(client, domain, q="ice@")) == []  # the email from its start
    assert listed(page_of(client, domain, q="%_")) == ["carol@acme.test"]  # no wildcards
    assert "Nobody unclaimed matches" in page_of(client, domain, q="nobody")


def test_pages_forwards_to_the_last_and_back(session, owner, as_owner, client, domain):
    factories_users = [
        {"email": f"p{i:03}@acme.test", "email_key": f"p{i:03}@acme.test", "session_generation": 1}
        for i in range(120)
    ]
    session.add_all(User(**values) for values in factories_users)
    session.commit()
    everyone = [f"p{i:03}@acme.test" for i in range(120)]

    first = page_of(client, domain)
    assert listed(first) == everyone[:50]
    assert 'rel="prev"' not in first and 'rel="next"' in first
    second = page_of(client, domain, after=everyone[49])
    assert listed(second) == everyone[50:100]
    assert 'rel="prev"' in second and 'rel="next"' in second
    third = page_of(client, domain, after=everyone[99])
    assert listed(third) == everyone[100:]
    assert 'rel="next"' not in third

    last = page_of(client, domain, last="1")
    assert listed(last) == everyone[70:]  # the last 50
    assert 'rel="next"' not in last and 'rel="prev"' in last
    back = page_of(client, domain, before=everyone[70])
    assert listed(back) == everyone[20:70]
    assert listed(page_of(client, domain, before=everyone[20])) == everyone[:20]
    before_first = page_of(client, domain, before=everyone[20])
    assert 'rel="prev"' not in before_first


def test_next_link_carries_the_search_and_the_last_key(session, owner, as_owner, client, domain):
    session.add_all(
        User(email=f"x{i:02}@acme.test", email_key=f"x{i:02}@acme.test", session_generation=1)
        for i in range(60)
    )
    session.commit()

    html = page_of(client, domain, q="x")

    assert f"/enterprise/domains/{domain.id}/unclaimed?q=x&amp;after=x49@acme.test" in html


@pytest.mark.parametrize(
    "args",
    [
        "after=" + "x" * 5000,
        "before=%00",
        "q=%ED%A0%80",  # a lone surrogate, UTF-8 encoded
        "q=%FF%FE",
        "last=yes",
        "after=",
        "q=" + "a" * 5000,
    ],
)
def test_malformed_cursor_is_a_page_not_an_error(owner, as_owner, client, domain, args):
    response = client.get(f"/enterprise/domains/{domain.id}/unclaimed", query_string=args)
    assert response.status_code == 200


def test_htmx_gets_the_fragment_and_a_canonical_url(session, owner, as_owner, client, htmx, domain):
    person(session, "one@acme.test")

    response = client.get(f"/enterprise/domains/{domain.id}/unclaimed?q=", headers=htmx)

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="unclaimed-results"')
    assert "<html" not in html
    assert response.headers["HX-Push-Url"] == f"/enterprise/domains/{domain.id}/unclaimed"
    assert "HX-Request" in response.headers["Vary"]
    assert 'id="unclaimed-csv"' in html and "hx-swap-oob" in html


def test_unverified_domain_says_the_list_appears_once_verified(
    session, account, owner, as_owner, client
):
    pending = factories.make_domain(session, account, DOMAIN)
    person(session, "someone@acme.test")

    html = page_of(client, pending)

    assert "appears once acme.test is verified" in html
    assert "someone@acme.test" not in html
    assert client.get(f"/enterprise/domains/{pending.id}/unclaimed.csv").status_code == 404


def test_domains_page_links_verified_domains_to_their_list(
    session, account, owner, as_owner, client, domain
):
    pending = factories.make_domain(session, account, "pending.test")

    html = client.get("/enterprise/domains").get_data(as_text=True)

    assert f"/enterprise/domains/{domain.id}/unclaimed" in html
    assert f"/enterprise/domains/{pending.id}/unclaimed" not in html


def test_signed_out_is_sent_to_sign_in(client, domain):
    for path in ("unclaimed", "unclaimed.csv"):
        response = client.get(f"/enterprise/domains/{domain.id}/{path}")
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_plain_member_is_refused(session, account, client, login_as, domain):
    member = factories.make_user(session, account, "plain@acme.test")
    login_as(member)

    for path in ("unclaimed", "unclaimed.csv"):
        assert client.get(f"/enterprise/domains/{domain.id}/{path}").status_code == 403


def test_co_owner_may_see_it(session, account, client, login_as, domain):
    login_as(factories.make_user(session, account, "co@acme.test", role="co-owner"))

    assert client.get(f"/enterprise/domains/{domain.id}/unclaimed").status_code == 200


def test_another_accounts_domain_is_404(session, owner, as_owner, client):
    other = factories.make_account(session, name="Other Corp")
    theirs = factories.make_domain(session, other, "other.test", verified=True)

    for path in ("unclaimed", "unclaimed.csv"):
        assert client.get(f"/enterprise/domains/{theirs.id}/{path}").status_code == 404
    assert client.get("/enterprise/domains/999999/unclaimed").status_code == 404


def test_csv_lists_everyone_with_headers_and_dated_name(session, owner, as_owner, client, domain):
    signed_up = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    person(session, "b@acme.test", "Bea", created_at=signed_up, last_sign_in_at=signed_up)
    person(session, "a@acme.test")
    person(session, "out@other.test")

    response = client.get(f"/enterprise/domains/{domain.id}/unclaimed.csv")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "no-store"
    stamp = utcnow().strftime("%Y%m%d")
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="unclaimed-acme.test-{stamp}.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows == [
        ["email", "name", "signed_up", "last_sign_in"],
        ["a@acme.test", "", rows[1][2], ""],
        ["b@acme.test", "Bea", "2026-01-02 03:04 UTC", "2026-01-02 03:04 UTC"],
    ]


def test_csv_follows_the_search_and_crosses_batches(session, owner, as_owner, client, domain):
    session.add_all(
        User(email=f"k{i:04}@acme.test", email_key=f"k{i:04}@acme.test", session_generation=1)
        for i in range(1203)
    )
    person(session, "other@acme.test")
    session.commit()

    body = client.get(f"/enterprise/domains/{domain.id}/unclaimed.csv?q=k").get_data(as_text=True)

    emails = [row[0] for row in csv.reader(io.StringIO(body))][1:]
    assert emails == [f"k{i:04}@acme.test" for i in range(1203)]


def test_csv_cells_never_run_as_formulas(session, owner, as_owner, client, domain):
    person(session, "=cmd@acme.test", '=HYPERLINK("http://evil.test","x")')
    person(session, "ok@acme.test", "@SUM(1+1)")

    body = client.get(f"/enterprise/domains/{domain.id}/unclaimed.csv").get_data(as_text=True)

    rows = list(csv.reader(io.StringIO(body)))[1:]
    assert rows[0][:2] == ["'=cmd@acme.test", '\'=HYPERLINK("http://evil.test","x")']
    assert rows[1][:2] == ["ok@acme.test", "'@SUM(1+1)"]


def test_service_pages_without_http(session, account, domain):
    for i in range(3):
        person(session, f"s{i}@acme.test")
    factories.make_user(session, account, "s9@acme.test")

    page = unclaimed.list_unclaimed(session, account.id, DOMAIN, unclaimed.Cursor())

    assert [p.email for p in page.people] == ["s0@acme.test", "s1@acme.test", "s2@acme.test"]
    assert not page.has_previous and not page.has_next
    assert [p.email for p in unclaimed.export_unclaimed(session, account.id, DOMAIN, batch=2)] == [
        "s0@acme.test",
        "s1@acme.test",
        "s2@acme.test",
    ]


def test_email_domain_kept_on_insert_and_on_email_change(session):
    someone = person(session, "Who@Bücher.Example")
    assert someone.email_domain == "xn--bcher-kva.example"

    someone.email, someone.email_key = "who@acme.test", "who@acme.test"
    session.commit()
    assert session.get(User, someone.id).email_domain == "acme.test"


def test_a_member_removed_becomes_unclaimed(session, account, owner, as_owner, client, domain):
    user = factories.make_user(session, account, "gone@acme.test")
    assert listed(page_of(client, domain)) == []

    session.query(Membership).filter_by(user_id=user.id).delete()
    session.commit()

    assert listed(page_of(client, domain)) == ["gone@acme.test"]


# --- inviting from the tab (SPEC F13; the invitation service of blueprints/invitations) --


def invite(client, domain, headers=None, **form):
    return client.post(
        f"/enterprise/domains/{domain.id}/unclaimed/invite", data=form, headers=headers or {}
    )


def invitations_of(session, account) -> dict[str, str]:
    rows = session.query(Membership).filter(
        Membership.account_id == account.id, Membership.invitation_token_hash.is_not(None)
    )
    return {m.email: m.source for m in rows}


def test_invite_one_person_from_the_tab(session, account, owner, as_owner, client, htmx, domain):
    ann = person(session, "ann@acme.test")
    person(session, "bob@acme.test")

    response = invite(client, domain, headers=htmx, one=str(ann.id))

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="unclaimed-results"') and "<html" not in html
    assert "Invited 1: ann@acme.test" in html
    assert listed(html) == ["bob@acme.test"]  # Ann left the list
    session.expire_all()
    assert invitations_of(session, account) == {"ann@acme.test": "manual"}
    assert listed(page_of(client, domain)) == ["bob@acme.test"]
    assert [row.to_addr for row in session.query(OutboxEmail)] == ["ann@acme.test"]


def test_invite_the_ticked_people(session, account, owner, as_owner, client, htmx, domain):
    ann, bob = person(session, "ann@acme.test"), person(session, "bob@acme.test")
    person(session, "cy@acme.test")

    response = invite(client, domain, headers=htmx, id=[str(ann.id), str(bob.id)])

    assert "Invited 2: ann@acme.test, bob@acme.test" in response.get_data(as_text=True)
    assert listed(response.get_data(as_text=True)) == ["cy@acme.test"]
    session.expire_all()
    assert set(invitations_of(session, account)) == {"ann@acme.test", "bob@acme.test"}


def test_invite_everyone_on_this_page_keeps_the_page(
    session, account, owner, as_owner, client, domain
):
    session.add_all(
        User(email=f"p{i:02}@acme.test", email_key=f"p{i:02}@acme.test", session_generation=1)
        for i in range(55)
    )
    account.seat_limit = 100
    session.commit()

    response = invite(client, domain, after="p49@acme.test", all="1")

    html = response.get_data(as_text=True)
    assert "Invited 5: p50@acme.test" in html
    session.expire_all()
    assert len(invitations_of(session, account)) == 5
    assert len(listed(page_of(client, domain))) == 50  # p00..p49 still unclaimed


def test_invite_with_nobody_chosen_changes_nothing(
    session, account, owner, as_owner, client, domain
):
    person(session, "ann@acme.test")

    response = invite(client, domain, id=["x", "-1"])

    assert response.status_code == 422
    assert "Select the people to invite first." in response.get_data(as_text=True)
    session.expire_all()
    assert invitations_of(session, account) == {}


def test_invite_someone_not_unclaimed_here_is_not_invited(
    session, account, owner, as_owner, client, domain
):
    outsider = person(session, "out@other.test")
    member = factories.make_user(session, account, "in@acme.test")

    response = invite(client, domain, id=[str(outsider.id), str(member.id)])

    assert response.status_code == 200
    assert "2 of the people chosen are no longer unclaimed" in response.get_data(as_text=True)
    session.expire_all()
    assert invitations_of(session, account) == {}


def test_invite_without_a_seat_is_refused_with_the_reason(
    session, account, owner, as_owner, client, domain
):
    ann = person(session, "ann@acme.test")
    account.seat_limit = account.seats_used
    session.commit()

    html = invite(client, domain, one=str(ann.id)).get_data(as_text=True)

    assert "Not invited: ann@acme.test: Licence limit reached" in html
    assert listed(html) == ["ann@acme.test"]


def test_invite_needs_csrf_and_an_admin(session, account, client, login_as, domain):
    ann = person(session, "ann@acme.test")
    login_as(factories.make_user(session, account, "plain@acme.test"))
    assert invite(client, domain, one=str(ann.id)).status_code == 403

    login_as(factories.make_user(session, account, "co@acme.test", role="co-owner"))
    response = client.post(
        f"/enterprise/domains/{domain.id}/unclaimed/invite", data={"one": ann.id}, csrf=False
    )
    assert response.status_code == 400
    session.expire_all()
    assert invitations_of(session, account) == {}
    assert invite(client, domain, one=str(ann.id)).status_code == 200  # a co-owner may


def test_invite_on_another_accounts_or_unverified_domain_is_404(
    session, account, owner, as_owner, client
):
    other = factories.make_account(session, name="Other Corp")
    theirs = factories.make_domain(session, other, "other.test", verified=True)
    pending = factories.make_domain(session, account, "pending.test")
    ann = person(session, "ann@other.test")

    assert invite(client, theirs, one=str(ann.id)).status_code == 404
    assert invite(client, pending, one=str(ann.id)).status_code == 404
