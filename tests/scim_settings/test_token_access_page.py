"""A token's access on the SCIM page (SPEC F11): New token with an IP allow-list and the
read-only box, a bad range shown next to the field with nothing created, the Access
column, and Change access (passphrase; audited, the owners told; the secret kept)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from blueprints.scim_settings import connector as service
from models import AuditEvent, utcnow
from tests import factories
from tests.scim_settings.test_page import HTMX, PAGE, WRONG, _emails, _fragment, _token
from tests.scim_settings.test_tokens_page import _named, _row


def _create(client, allowed="", read_only=False, name="Okta production"):
    data = {
        "name": name,
        "lifetime": "90",
        "passphrase": factories.PASSPHRASE,
        "allowed_networks": allowed,
    }
    if read_only:
        data["read_only"] = "y"
    return client.post(f"{PAGE}/tokens/new", data=data, headers=HTMX)


def _field_error(page: str, field_id: str) -> str | None:
    match = re.search(rf'<p class="error" id="{field_id}-error">([^<]+)</p>', page)
    return match.group(1) if match else None


def test_new_token_form_offers_the_allow_list_and_read_only(client, enabled):
    page = _fragment(client.get(f"{PAGE}/tokens/new", headers=HTMX), "connector-actions")

    assert '<label for="allowed_networks">IP allow-list</label>' in page
    assert re.search(r'<textarea[^>]*id="allowed_networks"[^>]*name="allowed_networks"', page)
    assert re.search(r'<input[^>]*id="read_only"[^>]*type="checkbox"', page)
    assert '<label for="read_only">Read-only' in page


def test_new_token_keeps_the_allow_list_canonical_and_shows_it(client, session, enabled):
    page = _fragment(
        _create(client, "203.0.113.7, 2001:DB8::/32\n198.51.100.0/24  203.0.113.7"),
        "connector-panel",
    )

    created = _named(session, "Okta production")
    assert created.allowed_networks == "203.0.113.7/32\n2001:db8::/32\n198.51.100.0/24"
    assert created.read_only is False
    row = _row(page, created)
    ranges = re.findall(r'<code class="range">([^<]+)</code>', row)
    assert ranges == ["203.0.113.7/32", "2001:db8::/32", "198.51.100.0/24"]
    assert "Read and write" in row
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "scim.token_created"))
    assert event.detail["allowed_networks"] == [
        "203.0.113.7/32",
        "2001:db8::/32",
        "198.51.100.0/24",
    ]


def test_new_read_only_token_without_allow_list(client, session, enabled):
    page = _fragment(_create(client, read_only=True, name="Reporting"), "connector-panel")

    created = _named(session, "Reporting")
    assert created.read_only is True and created.allowed_networks is None
    row = _row(page, created)
    assert '<span class="badge">Read-only</span>' in row and "any address" in row
    default = _named(session, "Default")
    assert "Read and write" in _row(page, default) and "any address" in _row(page, default)


@pytest.mark.parametrize(
    ("allowed", "error"),
    [
        (
            "203.0.113.0/33",
            "“203.0.113.0/33” is not an IP address or CIDR range (e.g. 203.0.113.7, "
            "203.0.113.0/24 or 2001:db8::/32).",
        ),
        (
            "okta.com",
            "“okta.com” is not an IP address or CIDR range (e.g. 203.0.113.7, "
            "203.0.113.0/24 or 2001:db8::/32).",
        ),
        ("10.1.2.3/16", "“10.1.2.3/16” has bits set past its prefix: did you mean 10.1.0.0/16?"),
        (
            "2001:db8::1/32",
            "“2001:db8::1/32” has bits set past its prefix: did you mean 2001:db8::/32?",
        ),
        (
            " ".join(f"10.0.{n}.0/24" for n in range(51)),
            "At most 50 ranges; use wider ones (e.g. 203.0.113.0/24).",
        ),
    ],
)
def test_a_bad_range_is_shown_next_to_the_field_and_nothing_is_created(
    client, session, enabled, allowed, error
):
    page = _fragment(_create(client, allowed), "connector-panel", 422)

    assert _field_error(page, "allowed_networks") == error
    assert 'aria-invalid="true"' in page
    assert _token(page) is None
    assert _named(session, "Okta production") is None
    # What was typed stays in the field, to be corrected rather than typed again.
    assert allowed.split()[0] in page


def _access(client, token_id, allowed, read_only=False, passphrase=factories.PASSPHRASE):
    data = {"access-allowed_networks": allowed, "access-passphrase": passphrase}
    if read_only:
        data["access-read_only"] = "y"
    return client.post(f"{PAGE}/tokens/{token_id}/access", data=data, headers=HTMX)


def test_change_access_form_shows_the_current_values(client, session, enabled):
    _create(client, "203.0.113.0/24", read_only=True)
    created = _named(session, "Okta production")

    form = _fragment(
        client.get(f"{PAGE}/tokens/{created.id}/access", headers=HTMX),
        f"token-panel-{created.id}",
    )

    assert re.search(r'<textarea[^>]*id="access-allowed_networks"[^>]*>\s*203.0.113.0/24', form)
    assert re.search(
        r'<input checked[^>]*id="access-read_only"|id="access-read_only"[^>]*checked', form
    )
    assert '<label for="access-passphrase">Passphrase</label>' in form
    assert ">Save access</button>" in form


def test_change_access_with_the_passphrase_keeps_the_secret_audits_and_tells_owners(
    client, session, enabled
):
    secret = _token(_fragment(_create(client, "203.0.113.0/24"), "connector-panel"))
    created = _named(session, "Okta production")
    before = len(_emails(session))

    page = _fragment(
        _access(client, created.id, "198.51.100.0/24", read_only=True), "connector-panel"
    )

    assert "Access of “Okta production” changed: Read-only, from 198.51.100.0/24." in page
    changed = _named(session, "Okta production")
    assert (changed.allowed_networks, changed.read_only) == ("198.51.100.0/24", True)
    result = service.authenticate(
        session, changed.connector.public_id, f"Bearer {secret}", utcnow(), False, "198.51.100.9"
    )
    assert result.reason is None and result.connector.read_only
    event = session.scalar(
        select(AuditEvent).where(AuditEvent.action == "scim.token_access_changed")
    )
    assert event.target == "SCIM token Okta production"
    assert event.detail["before"] == {"allowed_networks": ["203.0.113.0/24"], "read_only": False}
    assert event.detail["after"] == {"allowed_networks": ["198.51.100.0/24"], "read_only": True}
    assert secret not in str(event.detail)
    subjects = {e.subject for e in _emails(session)[before:]}
    assert subjects == {"A SCIM token's access was changed"}


def test_emptying_the_allow_list_opens_the_token_to_any_address(client, session, enabled):
    _create(client, "203.0.113.0/24")
    created = _named(session, "Okta production")

    _fragment(_access(client, created.id, ""), "connector-panel")

    assert _named(session, "Okta production").allowed_networks is None


def test_change_access_refuses_a_wrong_passphrase_or_a_bad_range_and_changes_nothing(
    client, session, enabled
):
    _create(client, "203.0.113.0/24")
    created = _named(session, "Okta production")

    wrong = _fragment(
        _access(client, created.id, "198.51.100.0/24", passphrase=WRONG), "connector-panel", 422
    )
    bad = _fragment(_access(client, created.id, "198.51.100.0/240"), "connector-panel", 422)

    assert "That passphrase is incorrect." in wrong
    assert "198.51.100.0/24" in wrong  # what was typed is kept
    assert _field_error(bad, "access-allowed_networks").startswith("“198.51.100.0/240” is not")
    assert _named(session, "Okta production").allowed_networks == "203.0.113.0/24"
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.action == "scim.token_access_changed")
    ).all()
    assert actions == []


def test_an_unchanged_form_records_nothing(client, session, enabled):
    _create(client, "203.0.113.0/24")
    created = _named(session, "Okta production")

    page = _fragment(_access(client, created.id, "203.0.113.0/24"), "connector-panel")

    assert "Access of “Okta production” unchanged." in page
    assert (
        session.scalar(select(AuditEvent).where(AuditEvent.action == "scim.token_access_changed"))
        is None
    )
