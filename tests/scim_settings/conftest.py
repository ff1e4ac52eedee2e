"""An account ready for SCIM: a verified domain and SSO on (the seed's first two steps)."""

from __future__ import annotations

import pytest

from models import SsoConnection
from tests import factories


@pytest.fixture
def ready(session, account, owner):
    """The account with example.com verified and an enabled SSO connection."""
    factories.make_domain(session, account, "example.com", verified=True)
    session.add(
        SsoConnection(
            account_id=account.id,
            public_id="sso-ready",
            protocol="oidc",
            enabled=True,
            test_ok=True,
        )
    )
    session.commit()
    return account


@pytest.fixture
def signed_in(owner, login_as):
    """The owner, signed in."""
    login_as(owner)
    return owner


@pytest.fixture
def enabled(client, session, ready, signed_in) -> str:
    """SCIM enabled through the page (Okta, 90 days); the token it showed."""
    from tests.scim_settings.test_page import _enable, _fragment, _token

    token = _token(_fragment(_enable(client), "connector-panel"))
    assert token
    return token
