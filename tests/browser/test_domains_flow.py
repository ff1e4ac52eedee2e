"""The Domains page in a real browser: add, verify in place, fail with a reason, remove."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from models import Domain
from tests import factories

pytestmark = pytest.mark.browser

SCREENSHOT = Path(tempfile.gettempdir()) / "domains.png"  # /tmp/domains.png, to look at


def sign_in(page: Page, user, passphrase: str = factories.PASSPHRASE) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Passphrase").fill(passphrase)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation").get_by_role("link", name="Domains")).to_be_visible()


def open_domains(page: Page) -> None:
    page.get_by_role("navigation").get_by_role("link", name="Domains").click()
    expect(page.get_by_role("heading", name="Domains")).to_be_visible()
    # The CDN is blocked: htmx must have come from the local fallback copy.
    assert page.evaluate("typeof window.htmx") == "object"


def add_domain(page: Page, typed: str, shown: str):
    page.get_by_label("Domain").fill(typed)
    page.get_by_role("button", name="Add domain").click()
    row = page.locator("tr.domain-row", has=page.get_by_role("cell", name=shown, exact=True))
    expect(row).to_be_visible()
    return row


def mark_page(page: Page) -> None:
    """Leave a marker a full page load would wipe out."""
    page.evaluate("window.__marker = 1")


def assert_same_page(page: Page) -> None:
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def _domains(session) -> list[Domain]:
    session.expire_all()
    return list(session.scalars(select(Domain)))


def test_owner_verifies_domain_in_place_when_record_is_published(page, owner, dns, session):
    sign_in(page, owner)
    open_domains(page)
    mark_page(page)

    row = add_domain(page, "Example.COM.", "example.com")
    expect(row.locator(".domain-name")).to_have_text("example.com")
    expect(row.locator(".badge")).to_have_text("Pending")
    # Publish exactly what the page tells the owner to publish.
    record_name = row.locator("code[id$='-name']").inner_text()
    record_value = row.locator("code[id$='-value']").inner_text()
    assert record_name == "_identity-verification.example.com"
    assert re.fullmatch(r"identity-verification=[\w-]+", record_value)
    dns.add_domain("example.com")
    dns.add_txt(record_name, record_value)

    row.get_by_role("button", name="Verify Domain").click()

    expect(row.locator(".badge")).to_have_text("Verified")
    expect(row.get_by_role("button", name="Verify Domain")).to_have_count(0)
    assert_same_page(page)
    assert page.url.endswith("/enterprise/domains")
    assert [(d.name, d.status) for d in _domains(session)] == [("example.com", "verified")]
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_owner_sees_reason_in_row_when_verification_fails(page, owner, dns):
    sign_in(page, owner)
    open_domains(page)
    mark_page(page)
    row = add_domain(page, "example.com", "example.com")
    dns.add_domain("example.com")  # the domain exists, the record is not published yet

    row.get_by_role("button", name="Verify Domain").click()

    expect(row.locator(".badge")).to_have_text("Failed")
    expect(row.locator(".reason")).to_have_text("No TXT record found at the record name yet.")
    expect(row.get_by_role("button", name="Verify Domain")).to_be_enabled()
    assert_same_page(page)


def test_owner_sees_error_next_to_field_when_name_is_invalid(page, owner, session):
    sign_in(page, owner)
    open_domains(page)
    mark_page(page)

    page.get_by_label("Domain").fill("https://example.com/")
    page.get_by_role("button", name="Add domain").click()

    expect(page.locator("#name-error")).to_contain_text("without http:// or a path")
    expect(page.get_by_label("Domain")).to_have_attribute("aria-invalid", "true")
    assert_same_page(page)
    assert _domains(session) == []


def test_owner_removes_domain_after_confirming_passphrase(page, owner, account, session):
    domain = factories.make_domain(session, account, "example.com", verified=True)
    sign_in(page, owner)
    open_domains(page)
    mark_page(page)
    row = page.locator(f"#domain-row-{domain.id}")

    row.get_by_role("link", name="Remove").click()
    passphrase = row.get_by_label("Passphrase")
    expect(passphrase).to_be_focused()
    passphrase.fill("not my passphrase")
    row.get_by_role("button", name="Remove domain").click()
    expect(row.locator(".error")).to_have_text("That passphrase is incorrect.")
    expect(row.get_by_label("Passphrase")).to_be_focused()
    assert [d.name for d in _domains(session)] == ["example.com"]

    row.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    row.get_by_role("button", name="Remove domain").click()

    expect(row).to_have_count(0)
    expect(page.get_by_text("No domains yet")).to_be_visible()
    assert_same_page(page)
    assert _domains(session) == []


def test_owner_cancels_removal_and_gets_row_back(page, owner, account, session):
    domain = factories.make_domain(session, account, "example.com")
    sign_in(page, owner)
    open_domains(page)
    row = page.locator(f"#domain-row-{domain.id}")

    row.get_by_role("link", name="Remove").click()
    expect(row.get_by_label("Passphrase")).to_be_visible()
    row.get_by_role("link", name="Cancel").click()

    expect(row.locator(".badge")).to_have_text("Pending")
    expect(row.get_by_role("button", name="Verify Domain")).to_be_visible()


def test_copy_button_puts_record_value_on_clipboard(page, owner, account, session):
    domain = factories.make_domain(session, account, "example.com")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, owner)
    open_domains(page)
    row = page.locator(f"#domain-row-{domain.id}")
    value = row.locator("code[id$='-value']")

    value.locator("xpath=..").get_by_role("button", name="Copy").click()

    expect(value.locator("xpath=..").get_by_role("button")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == f"identity-verification={domain.token}"
