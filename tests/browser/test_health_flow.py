"""Provisioning health in a real browser (SPEC F10): the IdP retries a conflicting user; the
owner sees one problem with its count on the SCIM page, follows its link to the request
that caused it, comes back and marks it resolved: it leaves the list in place (htmx) and
stays gone on reload."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_scim_flow import sign_in
from tests.scim_api.conftest import Scim, issued, provision  # noqa: F401
from tests.scim_settings.conftest import ready  # noqa: F401  (verified domain + SSO on)

pytestmark = pytest.mark.browser
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCREENSHOT = Path(tempfile.gettempdir()) / "health.png"  # /tmp/health.png, to look at


def test_owner_follows_a_problem_to_its_request_and_resolves_it(page: Page, app, owner, issued):  # noqa: F811
    idp = Scim(app.test_client(), issued)
    provision(idp, "ada@example.com")
    for _ in range(2):
        response = idp("POST", "/Users", json={"schemas": [USER], "userName": "ada@example.com"})
        assert response.status_code == 409

    sign_in(page, owner)
    page.get_by_role("navigation").get_by_role("link", name="SCIM").click()
    panel = page.locator("#provisioning-health")
    expect(panel.get_by_role("heading", name="Provisioning health")).to_be_visible()
    problems = panel.locator("li.problem")
    expect(problems).to_have_count(1)
    problem = problems.first
    expect(problem).to_contain_text("Uniqueness conflict")
    expect(problem).to_contain_text("2 times")
    expect(problem).to_contain_text("A user with userName 'ada@example.com' exists.")
    expect(panel.locator("#errors-24h")).to_have_text("2")
    panel.screenshot(path=SCREENSHOT)

    # Its link leads to the request that caused it.
    problem.get_by_role("link", name="See the latest request").click()
    expect(page).to_have_url(re.compile(r"/enterprise/scim/log/\d+$"))
    expect(page.get_by_role("heading", name="SCIM request")).to_be_visible()
    entry = page.locator("[id^='log-entry-']")
    expect(entry).to_contain_text("POST /Users")
    expect(entry).to_contain_text("409")
    expect(entry).to_contain_text("A user with userName 'ada@example.com' exists.")

    # Back to the panel; Mark resolved takes it off the list without reloading the page.
    page.get_by_role("link", name="Back to provisioning health").click()
    expect(problems).to_have_count(1)
    page.evaluate("window.__marker = 1")
    problem.get_by_role("button", name="Mark resolved").click()
    expect(problems).to_have_count(0)
    expect(panel).to_contain_text("No open problems.")
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"

    page.reload()
    expect(page.locator("#provisioning-health")).to_contain_text("No open problems.")
    expect(page.locator("#provisioning-health li.problem")).to_have_count(0)
