"""The Domains page and its HTMX fragments (SPEC F2), against the real DNS test server."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select, update

from blueprints.domains import services
from models import AuditEvent, Domain, utcnow
from tests import factories
from tests.domains.conftest import publish

PAGE = "/enterprise/domains"


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _domains(session, account=None) -> list[Domain]:
    session.expire_all()
    query = select(Domain).order_by(Domain.id)
    if account is not None:
        query = query.where(Domain.account_id == account.id)
    return list(session.scalars(query))


def _field_error(page: str) -> str:
    """The error shown under the domain field (the form macro's `<p id="name-error">`)."""
    match = re.search(
        r'<div class="field has-error">.*?<input[^>]*aria-invalid="true"[^>]*>'
        r'\s*<p class="error" id="name-error">(.*?)</p>',
        page,
        re.S,
    )
    assert match, "no error next to the domain field"
    return match.group(1)


def _actions(session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def signed_in(owner, login_as):
    login_as(owner)
    return owner


# --- the page and adding ------------------------------------------------------------------


def test_domains_page_shows_add_form_when_owner_signs_in(client, signed_in):
    response = client.get(PAGE)

    page = _text(response)
    assert response.status_code == 200
    assert 'id="domains-panel"' in page
    assert 'name="name"' in page and "Add domain" in page
    assert "No domains yet" in page


def test_domains_page_sends_to_sign_in_when_signed_out(client):
    response = client.get(PAGE)

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/enterprise/domains")


def test_add_domain_stores_normalised_name_and_shows_record_to_publish(
    client, session, account, signed_in
):
    response = client.post(PAGE, data={"name": "  Example.COM. "})

    assert response.status_code == 302
    assert response.headers["Location"] == PAGE
    [domain] = _domains(session)
    assert (domain.name, domain.status, domain.account_id) == ("example.com", "pending", account.id)
    page = _text(client.get(PAGE))
    assert f'id="domain-row-{domain.id}"' in page
    assert "_identity-verification.example.com" in page
    assert f"identity-verification={domain.token}" in page
    assert "Pending" in page and "Verify Domain" in page
    assert [e.target for e in _actions(session, "domain.added")] == ["example.com"]


def test_add_domain_shows_unicode_name_and_idna_record_when_name_is_international(
    client, session, signed_in
):
    client.post(PAGE, data={"name": "Bücher.example"})

    [domain] = _domains(session)
    assert domain.name == "xn--bcher-kva.example"
    page = _text(client.get(PAGE))
    assert '<td class="domain-name">bücher.example</td>' in page
    assert "_identity-verification.xn--bcher-kva.example" in page


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter a domain name"),
        ("localhost", "localhost isn't a valid domain name."),
        ("http://x.com", "without http:// or a path"),
        ("x.com/path", "without http:// or a path"),
        ("a" * 64 + ".com", "isn't a valid domain name."),
    ],
)
def test_add_domain_shows_error_next_to_field_when_name_is_invalid(
    client, session, signed_in, typed, message
):
    response = client.post(PAGE, data={"name": typed})

    assert response.status_code == 422
    page = _text(response)
    assert "<html" in page  # a full page for a plain form post
    assert message in _field_error(page)
    assert _domains(session) == []


def test_add_domain_refuses_duplicate_when_account_already_has_it(
    client, session, account, signed_in
):
    factories.make_domain(session, account, "example.com")

    response = client.post(PAGE, data={"name": "EXAMPLE.com"})

    assert response.status_code == 422
    assert "example.com is already on your list." in _field_error(_text(response))
    assert len(_domains(session)) == 1


def test_add_domain_refuses_name_when_another_account_verified_it(
    client, session, other_account, signed_in
):
    factories.make_domain(session, other_account, "example.com", verified=True)

    response = client.post(PAGE, data={"name": "example.com"})

    assert response.status_code == 422
    assert "example.com is verified by another account." in _field_error(_text(response))
    assert [d.account_id for d in _domains(session)] == [other_account.id]


def test_add_domain_accepts_name_when_another_account_only_has_it_pending(
    client, session, account, other_account, signed_in
):
    factories.make_domain(session, other_account, "example.com")

    response = client.post(PAGE, data={"name": "example.com"})

    assert response.status_code == 302
    assert {d.account_id for d in _domains(session)} == {account.id, other_account.id}


def test_add_domain_returns_panel_fragment_when_sent_by_htmx(client, session, signed_in, htmx):
    response = client.post(PAGE, data={"name": "example.com"}, headers=htmx)

    page = _text(response)
    [domain] = _domains(session)
    assert response.status_code == 200
    assert "<html" not in page
    assert page.lstrip().startswith('<div id="domains-panel">')
    assert f'id="domain-row-{domain.id}"' in page
    assert re.search(r'<input [^>]*name="name"[^>]*value=""', page)  # emptied for the next one
    assert "HX-Request" in response.headers["Vary"]


def test_add_domain_returns_panel_fragment_with_422_when_htmx_name_is_invalid(
    client, session, signed_in, htmx
):
    response = client.post(PAGE, data={"name": "a@b.com"}, headers=htmx)

    page = _text(response)
    assert response.status_code == 422
    assert "<html" not in page
    assert page.lstrip().startswith('<div id="domains-panel">')
    assert "without http:// or a path" in _field_error(page)
    assert "HX-Request" in response.headers["Vary"]
    assert _domains(session) == []


def test_add_domain_is_refused_when_csrf_token_is_missing(client, session, signed_in):
    response = client.post(PAGE, data={"name": "example.com"}, csrf=False)

    assert response.status_code == 400
    assert _domains(session) == []


# --- verifying ----------------------------------------------------------------------------


def _verify(client, domain, htmx):
    return client.post(f"{PAGE}/{domain.id}/verify", headers=htmx)


def test_verify_shows_verified_row_when_record_is_published(
    client, session, account, signed_in, htmx, dns
):
    domain = factories.make_domain(session, account, "example.com")
    publish(dns, domain)

    response = _verify(client, domain, htmx)

    page = _text(response)
    assert response.status_code == 200
    assert "<html" not in page
    assert page.lstrip().startswith(f'<tr id="domain-row-{domain.id}"')
    assert '<span class="badge ok">Verified</span>' in page
    assert "Verify Domain" not in page  # nothing left to do
    [stored] = _domains(session)
    assert stored.status == "verified" and stored.verified_at is not None
    assert [e.target for e in _actions(session, "domain.verified")] == ["example.com"]


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        pytest.param(lambda dns, d: dns.add_domain(d.name), "record_missing", id="record-missing"),
        pytest.param(
            lambda dns, d: publish(dns, d, "identity-verification=wrong"),
            "value_mismatch",
            id="value-mismatch",
        ),
        pytest.param(lambda dns, d: None, "no_such_domain", id="no-such-domain"),
        pytest.param(
            lambda dns, d: dns.servfail(services.record_name(d)), "dns_error", id="servfail"
        ),
    ],
)
def test_verify_shows_failed_row_with_reason_when_lookup_fails(
    client, session, account, signed_in, htmx, dns, setup, reason
):
    domain = factories.make_domain(session, account, "example.com")
    setup(dns, domain)

    response = _verify(client, domain, htmx)

    page = _text(response)
    assert response.status_code == 200
    assert "<html" not in page
    assert page.lstrip().startswith(f'<tr id="domain-row-{domain.id}"')
    assert '<span class="badge bad">Failed</span>' in page
    assert services.REASONS[reason] in page
    assert "Verify Domain" in page  # the owner can try again
    [stored] = _domains(session)
    assert (stored.status, stored.failure_reason) == ("failed", reason)


def test_verify_shows_timeout_reason_when_name_server_never_answers(
    client, session, account, signed_in, htmx, silent_dns
):
    domain = factories.make_domain(session, account, "example.com")

    response = _verify(client, domain, htmx)

    assert response.status_code == 200
    assert services.REASONS["timeout"] in _text(response)
    assert _domains(session)[0].failure_reason == "timeout"


def test_verify_succeeds_when_failed_domain_publishes_record_later(
    client, session, account, signed_in, htmx, dns
):
    domain = factories.make_domain(session, account, "example.com")
    dns.add_domain(domain.name)
    assert "Failed" in _text(_verify(client, domain, htmx))

    dns.add_txt(services.record_name(domain), services.record_value(domain))
    page = _text(_verify(client, domain, htmx))

    assert "Verified" in page
    assert services.REASONS["record_missing"] not in page
    assert _domains(session)[0].failure_reason is None


def test_verify_redirects_to_page_showing_verified_when_sent_without_htmx(
    client, session, account, signed_in, dns
):
    domain = factories.make_domain(session, account, "example.com")
    publish(dns, domain)

    response = client.post(f"{PAGE}/{domain.id}/verify")

    assert response.status_code == 302
    assert response.headers["Location"] == PAGE
    assert '<span class="badge ok">Verified</span>' in _text(client.get(PAGE))


def test_verify_fails_with_claimed_reason_when_another_account_verified_name_first(
    client, session, account, other_account, signed_in, htmx, dns
):
    theirs = factories.make_domain(session, other_account, "example.com", verified=True)
    ours = factories.make_domain(session, account, "example.com")
    publish(dns, theirs)
    dns.add_txt(services.record_name(ours), services.record_value(ours))  # both published

    response = _verify(client, ours, htmx)

    page = _text(response)
    assert page.lstrip().startswith(f'<tr id="domain-row-{ours.id}"')
    assert "Failed" in page
    assert services.REASONS["claimed_elsewhere"] in page
    statuses = {d.account_id: d.status for d in _domains(session)}
    assert statuses == {other_account.id: "verified", account.id: "failed"}


def test_verify_fails_with_claimed_reason_when_another_account_verifies_during_lookup(
    client, session, account, other_account, signed_in, htmx, dns
):
    """Both accounts published their value; the other account's verification commits while
    our DNS question is in flight. One account ends up with the domain, never both."""
    theirs = factories.make_domain(session, other_account, "example.com")
    ours = factories.make_domain(session, account, "example.com")
    publish(dns, theirs)
    dns.add_txt(services.record_name(ours), services.record_value(ours))
    engine, theirs_id = session.get_bind(), theirs.id

    def other_account_wins(name: str) -> None:
        dns.on_query = None
        with engine.begin() as conn:
            conn.execute(update(Domain).where(Domain.id == theirs_id).values(status="verified"))

    dns.on_query = other_account_wins

    response = _verify(client, ours, htmx)

    page = _text(response)
    assert response.status_code == 200
    assert page.lstrip().startswith(f'<tr id="domain-row-{ours.id}"')
    assert "Failed" in page and "verified by another account" in page
    statuses = {d.account_id: d.status for d in _domains(session)}
    assert statuses == {other_account.id: "verified", account.id: "failed"}
    [event] = _actions(session, "domain.verify_failed")
    assert (event.account_id, event.detail) == (account.id, {"reason": "claimed_elsewhere"})


def _lost_domain(session, account):
    return factories.make_domain(
        session,
        account,
        "example.com",
        verified=True,
        lost_since=utcnow(),
        failure_reason="record_missing",
    )


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        pytest.param(lambda dns, d: dns.add_domain(d.name), "record_missing", id="still-missing"),
        pytest.param(
            lambda dns, d: dns.servfail(services.record_name(d)), "dns_error", id="servfail"
        ),
    ],
)
def test_verify_keeps_domain_verified_when_lost_record_check_fails(
    client, session, account, signed_in, htmx, dns, setup, reason
):
    """A verified domain whose record went missing shows Verify Domain; a failed click must
    not take the verification away: the daily job's grace period decides that."""
    domain = _lost_domain(session, account)
    lost_since = domain.lost_since
    setup(dns, domain)

    page = _text(_verify(client, domain, htmx))

    assert '<span class="badge ok">Verified</span>' in page
    assert services.REASONS[reason] in page
    assert "Verify Domain" in page
    [stored] = _domains(session)
    assert (stored.status, stored.lost_since, stored.failure_reason) == (
        "verified",
        lost_since,
        reason,
    )


def test_verify_clears_lost_record_when_record_is_back(
    client, session, account, signed_in, htmx, dns
):
    domain = _lost_domain(session, account)
    publish(dns, domain)

    page = _text(_verify(client, domain, htmx))

    assert "Verified" in page
    assert "Record missing" not in page and "Verify Domain" not in page
    [stored] = _domains(session)
    assert (stored.status, stored.lost_since, stored.failure_reason) == ("verified", None, None)


def test_lost_record_is_shown_on_verified_row_with_verify_button(
    client, session, account, signed_in
):
    domain = _lost_domain(session, account)

    page = _text(client.get(f"{PAGE}/{domain.id}"))

    assert "Verified" in page
    assert "Record missing since" in page
    assert services.REASONS["record_missing"] in page
    assert "Verify Domain" in page


def test_verify_answers_401_with_hx_redirect_when_session_has_ended(client, session, account, htmx):
    domain = factories.make_domain(session, account, "example.com")

    response = client.post(f"{PAGE}/{domain.id}/verify", headers=htmx)

    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login?next=/enterprise/domains")
    assert _domains(session)[0].status == "pending"


# --- who may do what ----------------------------------------------------------------------

ENDPOINTS = [
    pytest.param("POST", "/verify", id="verify"),
    pytest.param("GET", "/remove", id="remove-form"),
    pytest.param("POST", "/remove", id="remove"),
    pytest.param("GET", "", id="row"),
]


@pytest.mark.parametrize(("method", "suffix"), ENDPOINTS)
def test_domain_endpoints_answer_404_when_domain_belongs_to_another_account(
    client, session, other_account, signed_in, htmx, dns, method, suffix
):
    theirs = factories.make_domain(session, other_account, "other.example")
    publish(dns, theirs)

    response = client.open(
        f"{PAGE}/{theirs.id}{suffix}",
        method=method,
        headers=htmx,
        data={"passphrase": factories.PASSPHRASE} if method == "POST" else None,
    )

    assert response.status_code == 404
    [stored] = _domains(session)
    assert (stored.account_id, stored.status) == (other_account.id, "pending")
    assert dns.queries == []  # not even looked up


def test_domains_page_lists_only_the_accounts_own_domains(
    client, session, account, other_account, signed_in
):
    factories.make_domain(session, account, "ours.example")
    factories.make_domain(session, other_account, "theirs.example")

    page = _text(client.get(PAGE))

    assert "ours.example" in page
    assert "theirs.example" not in page


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "", id="page"),
        pytest.param("POST", "", id="add"),
        pytest.param("POST", "/{id}/verify", id="verify"),
        pytest.param("GET", "/{id}/remove", id="remove-form"),
        pytest.param("POST", "/{id}/remove", id="remove"),
        pytest.param("GET", "/{id}", id="row"),
    ],
)
def test_domain_endpoints_answer_403_when_user_is_plain_member(
    client, session, account, login_as, htmx, dns, method, path
):
    member = factories.make_user(session, account=account, role="member")
    domain = factories.make_domain(session, account, "example.com")
    publish(dns, domain)
    login_as(member)

    response = client.open(
        PAGE + path.format(id=domain.id),
        method=method,
        headers=htmx,
        data={"name": "new.example", "passphrase": factories.PASSPHRASE},
    )

    assert response.status_code == 403
    assert [(d.name, d.status) for d in _domains(session)] == [("example.com", "pending")]


def test_domains_page_is_open_to_co_owner(client, session, account, login_as):
    co_owner = factories.make_user(session, account=account, role="co-owner")
    login_as(co_owner)

    assert client.get(PAGE).status_code == 200
    assert client.post(PAGE, data={"name": "example.com"}).status_code == 302


# --- removing -----------------------------------------------------------------------------


def test_remove_asks_for_passphrase_in_row_fragment_when_sent_by_htmx(
    client, session, account, signed_in, htmx
):
    domain = factories.make_domain(session, account, "example.com")

    response = client.get(f"{PAGE}/{domain.id}/remove", headers=htmx)

    page = _text(response)
    assert response.status_code == 200
    assert "<html" not in page
    assert page.lstrip().startswith(f'<tr id="domain-row-{domain.id}"')
    assert 'type="password"' in page and 'name="passphrase"' in page
    assert "Remove <strong>example.com</strong>?" in page
    assert f'hx-get="{PAGE}/{domain.id}"' in page  # Cancel brings the row back
    assert "HX-Request" in response.headers["Vary"]


def test_remove_asks_for_passphrase_on_full_page_when_sent_without_htmx(
    client, session, account, signed_in
):
    domain = factories.make_domain(session, account, "example.com")

    page = _text(client.get(f"{PAGE}/{domain.id}/remove"))

    assert "<html" in page and "<h1>Remove domain</h1>" in page
    assert 'name="passphrase"' in page


def test_cancel_remove_returns_the_domain_row(client, session, account, signed_in, htmx):
    domain = factories.make_domain(session, account, "example.com")

    response = client.get(f"{PAGE}/{domain.id}", headers=htmx)

    page = _text(response)
    assert response.status_code == 200
    assert page.lstrip().startswith(f'<tr id="domain-row-{domain.id}" class="domain-row')
    assert "<html" not in page and "Pending" in page


@pytest.mark.parametrize(
    ("passphrase", "message"),
    [
        ("not my passphrase", "That passphrase is incorrect."),
        ("", "This field is required."),
    ],
)
def test_remove_keeps_domain_and_shows_error_when_passphrase_is_wrong(
    client, session, account, signed_in, htmx, passphrase, message
):
    domain = factories.make_domain(session, account, "example.com", verified=True)

    response = client.post(
        f"{PAGE}/{domain.id}/remove", data={"passphrase": passphrase}, headers=htmx
    )

    page = _text(response)
    assert response.status_code == 422
    assert "<html" not in page
    assert page.lstrip().startswith(f'<tr id="domain-row-{domain.id}"')
    assert message in page
    assert [(d.name, d.status) for d in _domains(session)] == [("example.com", "verified")]
    assert _actions(session, "domain.removed") == []


def test_remove_deletes_domain_and_records_audit_event_when_passphrase_is_right(
    client, session, account, owner, signed_in, htmx
):
    domain = factories.make_domain(session, account, "example.com", verified=True)

    response = client.post(
        f"{PAGE}/{domain.id}/remove", data={"passphrase": factories.PASSPHRASE}, headers=htmx
    )

    page = _text(response)
    assert response.status_code == 200
    assert "<html" not in page
    assert page.lstrip().startswith('<tr id="no-domains" class="empty">')  # replaces the row
    assert _domains(session) == []
    [event] = _actions(session, "domain.removed")
    assert (event.account_id, event.actor_user_id, event.target) == (
        account.id,
        owner.id,
        "example.com",
    )
    assert "No domains yet" in _text(client.get(PAGE))


def test_remove_returns_nothing_to_swap_in_when_other_domains_remain(
    client, session, account, signed_in, htmx
):
    domain = factories.make_domain(session, account, "example.com")
    factories.make_domain(session, account, "example.org")

    response = client.post(
        f"{PAGE}/{domain.id}/remove", data={"passphrase": factories.PASSPHRASE}, headers=htmx
    )

    assert response.status_code == 200
    assert response.get_data(as_text=True) == ""  # the row's outerHTML swap removes it
    assert [d.name for d in _domains(session)] == ["example.org"]


def test_remove_redirects_to_domains_page_when_sent_without_htmx(
    client, session, account, signed_in
):
    domain = factories.make_domain(session, account, "example.com")

    response = client.post(f"{PAGE}/{domain.id}/remove", data={"passphrase": factories.PASSPHRASE})

    assert response.status_code == 302
    assert response.headers["Location"] == PAGE
    assert _domains(session) == []


def test_removed_domain_can_be_claimed_by_another_account(
    client, session, account, other_account, other_owner, signed_in, login_as
):
    """After the owner removes a verified domain, it no longer blocks anyone else."""
    domain = factories.make_domain(session, account, "example.com", verified=True)
    client.post(f"{PAGE}/{domain.id}/remove", data={"passphrase": factories.PASSPHRASE})
    client.post("/logout")
    login_as(other_owner)

    response = client.post(PAGE, data={"name": "example.com"})

    assert response.status_code == 302
    assert [d.account_id for d in _domains(session)] == [other_account.id]
