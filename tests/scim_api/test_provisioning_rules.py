"""The pure rules of blueprints.scim_api.provisioning (SPEC F5), without HTTP, an app or
a database: which email is the member's, who a new SCIM user is matched to (or which 409
the IdP gets), the person a provisioned email creates, and invitation tokens."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from scim2_models import Context, SCIMException, UniquenessException

from blueprints.scim_api import provisioning, serialize
from blueprints.scim_api.provisioning import MAX_EMAIL, Match
from blueprints.scim_api.schemas import CORE_USER, UserResource

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def user(user_name: str = "bjensen", emails: list[dict] | None = None) -> UserResource:
    body = {"schemas": [CORE_USER], "userName": user_name}
    if emails is not None:
        body["emails"] = emails
    return serialize.validate(UserResource, body, Context.RESOURCE_CREATION_REQUEST)


def address(local: str, length: int, domain: str = "example.test") -> str:
    """An address of exactly `length` characters."""
    return local + "x" * (length - len(local) - len(domain) - 1) + "@" + domain


# --- member_email ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_name", "emails", "chosen"),
    [
        pytest.param(
            "bjensen",
            [
                {"value": "first@x.test"},
                {"value": "work@x.test", "type": "work"},
                {"value": "primary@x.test", "primary": True},
            ],
            "primary@x.test",
            id="primary-first",
        ),
        pytest.param(
            "bjensen",
            [{"value": "home@x.test", "type": "home"}, {"value": "work@x.test", "type": "work"}],
            "work@x.test",
            id="else-work",
        ),
        pytest.param(
            "bjensen",
            [{"value": "home@x.test", "type": "home"}, {"value": "work@x.test", "type": "Work"}],
            "work@x.test",
            id="work-any-case",
        ),
        pytest.param(
            "bjensen",
            [{"value": "home@x.test", "type": "home"}, {"value": "other@x.test"}],
            "home@x.test",
            id="else-first",
        ),
        pytest.param(
            "bjensen@x.test",
            [{"value": "listed@x.test"}],
            "listed@x.test",
            id="an-email-before-the-userName",
        ),
        pytest.param("bjensen@example.com", None, "bjensen@example.com", id="userName-address"),
        pytest.param("bjensen@example.com", [], "bjensen@example.com", id="no-emails-at-all"),
        pytest.param("  bjensen@example.com ", None, "bjensen@example.com", id="userName-trimmed"),
        pytest.param(
            "bjensen",
            [{"value": "  primary@x.test ", "primary": True}],
            "primary@x.test",
            id="email-trimmed",
        ),
        pytest.param(
            "bjensen",
            [{"value": "  ", "primary": True}, {"value": "work@x.test", "type": "work"}],
            "work@x.test",
            id="blank-primary-skipped",
        ),
        pytest.param(
            "bjensen@x.test",
            [{"value": " ", "type": "work"}],
            "bjensen@x.test",
            id="only-blank-emails",
        ),
        pytest.param("bjensen", None, None, id="no-email-anywhere"),
        pytest.param("bjensen@localhost", None, None, id="userName-without-a-dot-domain"),
        pytest.param("b jensen@x.test", None, None, id="userName-with-a-space"),
        pytest.param("a@b@x.test", None, None, id="userName-with-two-ats"),
        pytest.param("DOMAIN\\bjensen", None, None, id="userName-windows-account"),
    ],
)
def test_member_email(user_name, emails, chosen):
    """Primary, else work, else first email; else the userName when it is an address;
    else none (the member is kept, with no email)."""
    assert provisioning.member_email(user(user_name, emails)) == chosen


@pytest.mark.parametrize(
    ("length", "refused"),
    [(MAX_EMAIL - 1, False), (MAX_EMAIL, False), (MAX_EMAIL + 1, True), (500, True)],
)
def test_member_email_longer_than_an_address_can_be(length, refused):
    """RFC 5321: at most 320 characters. A longer email is a 400, not a 500 from the
    database that holds the person's address."""
    resource = user(emails=[{"value": address("b", length), "primary": True}])

    if refused:
        with pytest.raises(SCIMException) as raised:
            provisioning.member_email(resource)
        assert raised.value.status == 400 and raised.value.scim_type == "invalidValue"
        assert "320" in raised.value.detail
    else:
        assert provisioning.member_email(resource) == address("b", length)


@pytest.mark.parametrize(
    ("length", "email"),
    [(MAX_EMAIL, True), (MAX_EMAIL + 1, False)],
)
def test_long_user_name_is_no_address(length, email):
    """A userName longer than any address is kept as a userName, never used as one."""
    user_name = address("b", length)

    assert provisioning.member_email(user(user_name)) == (user_name if email else None)


# --- match_new ------------------------------------------------------------------------------

COLUMNS = {"user_name": "bjensen", "external_id": "ext-1"}


def before(**overrides) -> SimpleNamespace:
    """What a create reads first: nothing taken, the email's domain unverified, no person."""
    values = {
        "user_name_taken": False,
        "external_id_taken": False,
        "domain_id": None,
        "person_id": None,
        "member_id": None,
        "source": None,
        "user_name": None,
        "suspended_by_key": None,  # the deprovisioning policy's suspended rows (SPEC F12)
        "suspended_by_external_id": None,
    }
    return SimpleNamespace(**(values | overrides))


@pytest.mark.parametrize(
    ("row", "email", "match"),
    [
        pytest.param(before(), "b@x.test", Match(False), id="unverified-domain"),
        pytest.param(before(), None, Match(False), id="no-email"),
        pytest.param(before(domain_id=1, person_id=9), None, Match(False), id="no-email-no-person"),
        pytest.param(
            before(person_id=9, member_id=4, source="manual"),
            "b@x.test",
            Match(False),
            id="unverified-domain-never-joins-silently",
        ),
        pytest.param(
            before(person_id=9, source="scim", user_name="other"),
            "b@x.test",
            Match(False),
            id="unverified-domain-person-of-another-scim-user",
        ),
        pytest.param(before(domain_id=1), "b@x.test", Match(True), id="verified-new-person"),
        pytest.param(
            before(domain_id=1, person_id=9),
            "b@x.test",
            Match(True, 9, None),
            id="verified-existing-person",
        ),
        pytest.param(
            before(domain_id=1, person_id=9, member_id=4, source="manual"),
            "b@x.test",
            Match(True, 9, 4),
            id="verified-manual-member-adopted",
        ),
        pytest.param(
            before(suspended_by_key=7),
            "b@x.test",
            Match(False, restore_id=7),
            id="restore-userName",
        ),
        pytest.param(
            before(suspended_by_key=7, suspended_by_external_id=7, domain_id=1),
            "b@x.test",
            Match(True, restore_id=7),
            id="restore-both-same-row",
        ),
        pytest.param(
            before(domain_id=1, person_id=9, member_id=7, source="suspended"),
            "b@x.test",
            Match(True, restore_id=7),
            id="restore-by-verified-email",
        ),
        pytest.param(
            before(person_id=9, member_id=7, source="suspended"),
            "b@x.test",
            Match(False),
            id="unverified-email-restores-nothing",
        ),
    ],
)
def test_match_new(row, email, match):
    assert provisioning.match_new(row, COLUMNS, email) == match


@pytest.mark.parametrize(
    ("row", "email", "named"),
    [
        pytest.param(before(user_name_taken=True), None, "userName 'bjensen'", id="userName"),
        pytest.param(
            before(external_id_taken=True), "b@x.test", "externalId 'ext-1'", id="externalId"
        ),
        pytest.param(
            before(user_name_taken=True, external_id_taken=True),
            None,
            "userName 'bjensen'",
            id="userName-first",  # a repeated create is about its userName
        ),
        pytest.param(
            before(
                user_name_taken=True,
                domain_id=1,
                person_id=9,
                member_id=4,
                source="scim",
                user_name="babs",
            ),
            "b@x.test",
            "userName 'bjensen'",
            id="userName-before-email",
        ),
        pytest.param(
            before(external_id_taken=True, domain_id=1, person_id=9, source="scim"),
            "b@x.test",
            "externalId 'ext-1'",
            id="externalId-before-email",
        ),
        pytest.param(
            before(domain_id=1, person_id=9, member_id=4, source="scim", user_name="babs"),
            "b@x.test",
            "b@x.test already belongs to the user 'babs'",
            id="email-of-another-scim-user",
        ),
        pytest.param(
            before(suspended_by_key=7, suspended_by_external_id=8),
            None,
            "different users the IdP deleted",
            id="two-suspended-users",
        ),
        pytest.param(
            before(suspended_by_key=7, domain_id=1, person_id=9, member_id=4, source="manual"),
            "b@x.test",
            "b@x.test already belongs to another member",
            id="suspended-userName-but-email-of-another-member",
        ),
    ],
)
def test_match_new_conflicts(row, email, named):
    """409 uniqueness (RFC 7644 §3.3), naming what is taken: the userName first, then
    the externalId, then an email in a verified domain that a SCIM user already has."""
    with pytest.raises(UniquenessException) as raised:
        provisioning.match_new(row, COLUMNS, email)

    assert raised.value.status == 409 and raised.value.scim_type == "uniqueness"
    assert named in raised.value.detail


# --- new_person, invitation_token, lookup_values ---------------------------------------------


@pytest.mark.parametrize(
    ("display_name", "kept"),
    [
        ("Barbara Jensen", "Barbara Jensen"),
        (None, None),
        ("", None),
        ("n" * 200, "n" * 200),
        ("n" * 512, "n" * 200),  # the member keeps the whole displayName
    ],
)
def test_new_person_name(display_name, kept):
    assert provisioning.new_person(display_name, "b@x.test", NOW)["display_name"] == kept


def test_new_person_has_no_passphrase_until_welcomed():
    person = provisioning.new_person("Babs", "BJensen@Example.COM", NOW)

    assert person["email"] == "BJensen@Example.COM"  # as written; matched by its key
    assert person["email_key"] == "bjensen@example.com"
    assert person["passphrase_hash"] is None
    assert person["must_change_passphrase"] is True
    assert person["created_at"] == NOW


def test_invitation_token_keeps_only_its_hash():
    token, kept = provisioning.invitation_token()

    assert kept == hashlib.sha256(token.encode()).hexdigest()
    assert token not in kept


def test_invitation_tokens_are_unguessable():
    tokens = [provisioning.invitation_token()[0] for _ in range(50)]

    assert len(set(tokens)) == len(tokens)
    assert min(len(t) for t in tokens) >= 43  # 32 random bytes, URL-safe base64
    assert all(t.replace("-", "").replace("_", "").isalnum() for t in tokens)


@pytest.mark.parametrize(
    ("email", "values"),
    [
        (None, {"domain": None, "email_key": None}),
        ("BJensen@Example.COM", {"domain": "example.com", "email_key": "bjensen@example.com"}),
        (
            "b@Bücher.Example",
            {"domain": "xn--bcher-kva.example", "email_key": "b@bücher.example"},
        ),
    ],
)
def test_lookup_values(email, values):
    """The domain is matched as domains are stored (IDNA, lower case), the person by
    their address without case."""
    assert provisioning.lookup_values(email) == values
