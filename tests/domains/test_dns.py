"""`lookup_txt` against a real DNS server on loopback (dnslib), one case per outcome."""

from __future__ import annotations

import time

import pytest

from blueprints.domains.services import lookup_txt

RECORD = "_identity-verification.example.com"
VALUE = "identity-verification=s3cr3t-token-value"


@pytest.fixture
def ns(dns_server) -> list[str]:
    return [dns_server.address]


def test_lookup_finds_record_when_value_matches(dns, ns):
    dns.add_domain("example.com")
    dns.add_txt(RECORD, VALUE)

    result = lookup_txt(RECORD, VALUE, ns, 1.0)

    assert result.ok and result.reason is None
    assert (RECORD, "TXT") in dns.queries  # it asked the configured server


def test_lookup_finds_record_when_several_txt_records_exist(dns, ns):
    dns.add_domain("example.com")
    dns.add_txt(
        RECORD,
        "v=spf1 include:_spf.example.net ~all",
        "identity-verification=an-old-token",
        VALUE,
        "google-site-verification=abc",
    )

    assert lookup_txt(RECORD, VALUE, ns, 1.0).ok


def test_lookup_finds_record_when_value_is_split_into_several_strings(dns, ns):
    """Long TXT values come back as several character-strings of one record (RFC 7208 3.3)."""
    dns.add_domain("example.com")
    dns.add_txt(RECORD, (VALUE[:25], VALUE[25:]))

    assert lookup_txt(RECORD, VALUE, ns, 1.0).ok


def test_lookup_finds_record_when_name_is_asked_in_other_case(dns, ns):
    dns.add_domain("example.com")
    dns.add_txt(RECORD, VALUE)

    assert lookup_txt(RECORD.upper(), VALUE, ns, 1.0).ok


def test_lookup_says_record_missing_when_domain_exists_without_record(dns, ns):
    dns.add_domain("example.com")

    assert lookup_txt(RECORD, VALUE, ns, 1.0).reason == "record_missing"


def test_lookup_says_record_missing_when_subdomain_exists_below_zone(dns, ns):
    """`mail.example.com` has records but is no zone apex: the record is what's missing."""
    dns.add_domain("example.com")
    dns.add_txt("mail.example.com", "v=spf1 -all")

    result = lookup_txt("_identity-verification.mail.example.com", VALUE, ns, 1.0)

    assert result.reason == "record_missing"


def test_lookup_says_value_mismatch_when_record_has_another_value(dns, ns):
    dns.add_domain("example.com")
    dns.add_txt(RECORD, "identity-verification=someone-elses-token", "v=spf1 -all")

    result = lookup_txt(RECORD, VALUE, ns, 1.0)

    assert not result.ok
    assert result.reason == "value_mismatch"


def test_lookup_says_value_mismatch_when_value_only_starts_the_same(dns, ns):
    dns.add_domain("example.com")
    dns.add_txt(RECORD, VALUE + "-extra")

    assert lookup_txt(RECORD, VALUE, ns, 1.0).reason == "value_mismatch"


def test_lookup_says_no_such_domain_when_domain_is_nxdomain(dns, ns):
    dns.add_domain("example.org")  # the server knows other names, not this one

    assert lookup_txt(RECORD, VALUE, ns, 1.0).reason == "no_such_domain"


def test_lookup_says_dns_error_when_server_answers_servfail(dns, ns):
    dns.add_domain("example.com")
    dns.servfail(RECORD)

    assert lookup_txt(RECORD, VALUE, ns, 1.0).reason == "dns_error"


def test_lookup_says_timeout_within_bound_when_server_never_answers(silent_server):
    started = time.monotonic()

    result = lookup_txt(RECORD, VALUE, [silent_server.address], 1.0)

    assert result.reason == "timeout"
    assert time.monotonic() - started < 3.0
