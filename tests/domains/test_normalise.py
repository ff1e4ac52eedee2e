"""`normalise`: what a typed domain becomes, and what is refused (SPEC F2). No HTTP."""

from __future__ import annotations

import pytest

from blueprints.domains.services import DomainError, display_name, normalise

LONGEST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("Example.COM.", "example.com"),
        ("  example.com  ", "example.com"),
        ("\texample.com\n", "example.com"),
        ("sub.example.co.uk", "sub.example.co.uk"),
        ("my-company.io", "my-company.io"),
        ("123.example.com", "123.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.Example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("例え.jp", "xn--r8jz45g.jp"),
        ("example\u3002com", "example.com"),  # ideographic full stop, as IMEs type it
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        (LONGEST, LONGEST),
    ],
)
def test_normalise_returns_lower_case_idna_form_when_name_is_valid(typed, stored):
    assert normalise(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param(".", id="just-a-dot"),
        pytest.param("localhost", id="single-label"),
        pytest.param("http://x.com", id="url-scheme"),
        pytest.param("https://example.com/", id="url-slash"),
        pytest.param("x.com/path", id="path"),
        pytest.param("example.com:443", id="port"),
        pytest.param("a@b.com", id="email-address"),
        pytest.param("exa mple.com", id="inner-space"),
        pytest.param("example .com", id="space-before-dot"),
        pytest.param("exa\tmple.com", id="inner-tab"),
        pytest.param("a" * 64 + ".com", id="label-over-63"),
        pytest.param(LONGEST + "d", id="total-over-253"),
        pytest.param("-example.com", id="leading-hyphen"),
        pytest.param("example-.com", id="trailing-hyphen"),
        pytest.param("example.-com", id="tld-leading-hyphen"),
        pytest.param("example.123", id="numeric-tld"),
        pytest.param("192.168.0.1", id="ip-address"),
        pytest.param("example..com", id="empty-label"),
        pytest.param(".example.com", id="leading-dot"),
        pytest.param("example.com..", id="two-trailing-dots"),
        pytest.param("exam_ple.com", id="underscore"),
        pytest.param("*.example.com", id="wildcard"),
        pytest.param("xn--zz.com", id="bad-punycode"),
    ],
)
def test_normalise_rejects_name_when_it_is_not_a_domain(typed):
    with pytest.raises(DomainError) as caught:
        normalise(typed)
    assert str(caught.value)  # a message for the form, never an empty one


@pytest.mark.parametrize("typed", ["http://example.com", "example.com/login", "me@example.com"])
def test_normalise_explains_to_type_just_the_domain_when_given_url_or_email(typed):
    with pytest.raises(DomainError, match="without http:// or a path"):
        normalise(typed)


@pytest.mark.parametrize("typed", ["", "   ", "."])
def test_normalise_asks_for_a_domain_when_input_is_empty(typed):
    with pytest.raises(DomainError, match="Enter a domain name"):
        normalise(typed)


def test_normalise_names_the_input_when_it_is_invalid():
    with pytest.raises(DomainError) as caught:
        normalise("  -bad.com ")
    assert str(caught.value) == "-bad.com isn't a valid domain name."


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("xn--bcher-kva.example", "bücher.example"),
        ("xn--r8jz45g.jp", "例え.jp"),
        ("example.com", "example.com"),
        ("xn--zz.com", "xn--zz.com"),  # not decodable: shown as stored, never an error
    ],
)
def test_display_name_shows_unicode_form_when_stored_as_idna(stored, shown):
    assert display_name(stored) == shown
