"""Reading the SSO pages the way a person does: text, field errors, the status card."""

from __future__ import annotations

import html
import re

SSO_PAGE = "/enterprise/sso"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/enterprise/sso"}


def text(response) -> str:
    """The response body with entities decoded."""
    return html.unescape(response.get_data(as_text=True))


def visible(markup: str) -> str:
    """Markup without tags, whitespace collapsed: what a reader sees."""
    markup = re.sub(r"</?(?:a|span|code|strong|em|b|i)\b[^>]*>", "", markup)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def field_error(page: str, field_id: str) -> str:
    """The error shown under a form field (the form macro's `<p id="<field>-error">`)."""
    match = re.search(rf'<p class="error" id="{field_id}-error">(.*?)</p>', page, re.S)
    assert match, f"no error under the {field_id} field"
    return visible(match.group(1))


def section(page: str, element_id: str) -> str:
    """The visible text of the element with this id (up to its closing tag)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no #{element_id} on the page"
    return visible(match.group(2))


def status(page: str) -> str:
    """The visible text of the SSO status card."""
    return section(page, "sso-status")


FLOW_GONE = (
    "This sign-in link expired, was already used, or was started in another browser. Start again."
)
