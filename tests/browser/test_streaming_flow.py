"""Audit log streaming and export in a real browser: the owner exports the filtered log as
CSV, then starts a stream to a receiver (a real one on loopback), copies the secret shown
once, sends a test event the receiver verifies, and reveals the secret again with the
passphrase after a reload."""

from __future__ import annotations

import csv
import io

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import insert

from models import AuditEvent
from tests import factories
from tests.audit.receiver import Receiver

pytestmark = pytest.mark.browser


@pytest.fixture
def receiver():
    running = Receiver().start()
    yield running
    running.stop()


def sign_in(page: Page, owner) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    page.get_by_role("button", name="Sign in").click()


def test_owner_exports_the_filtered_log_as_csv(page, owner, account, session):
    for target in ("domain:a.test", "domain:b.test"):
        session.execute(
            insert(AuditEvent).values(account_id=account.id, action="domain.added", target=target)
        )
    session.commit()
    sign_in(page, owner)
    page.get_by_role("navigation").get_by_role("link", name="Audit log").click()
    # Typed before htmx has started, the input event would go unheard (the filter would
    # run on the field's change instead, as it does for a person who types that fast).
    page.wait_for_load_state()
    page.get_by_label("Resource").fill("b.test")
    expect(page.locator("#audit-results tbody tr[id^='event-']")).to_have_count(1)

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()

    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [row["resource"] for row in rows] == ["domain:b.test"]


def test_owner_starts_streaming_tests_it_and_reveals_the_secret(page, owner, receiver):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, owner)
    page.get_by_role("navigation").get_by_role("link", name="Audit log").click()
    page.get_by_role("link", name="stream them to your SIEM").click()
    expect(page.get_by_role("heading", name="Audit log streaming")).to_be_visible()

    page.get_by_label("Endpoint URL").fill(receiver.url)
    page.get_by_label("Passphrase").fill("not my passphrase")
    page.get_by_role("button", name="Start streaming").click()
    expect(page.locator("#passphrase-error")).to_have_text("That passphrase is incorrect.")
    expect(page.get_by_label("Endpoint URL")).to_have_value(receiver.url)
    expect(page.get_by_label("Passphrase")).to_be_focused()  # where the fix is typed

    page.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    page.get_by_role("button", name="Start streaming").click()
    secret = page.locator("#stream-secret")
    expect(secret).to_have_text(receiver_secret := secret.inner_text())
    assert receiver_secret.startswith("whsec_")
    page.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == receiver_secret
    receiver.secret = receiver_secret

    page.get_by_role("button", name="Hide secret").click()
    expect(page.locator("#stream-secret")).to_have_count(0)
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#test-result")).to_have_text("Test event delivered (HTTP 204).")
    assert receiver.actions == ["audit.stream_test"] and receiver.bad_signatures == 0

    page.reload()
    expect(page.locator("#stream-secret")).to_have_count(0)
    expect(page.locator("#stream-last")).to_contain_text("delivered (HTTP 204)")
    page.get_by_role("button", name="Reveal secret").click()
    page.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    page.get_by_role("button", name="Reveal secret").click()
    expect(page.locator("#stream-secret")).to_have_text(receiver_secret)
