"""An account with SCIM on and a client for its connector (STYLE §4: the `scim` fixture).

The API's limits keep counts (blueprints.scim_api.limits): every test starts with empty
windows so that no test's requests count against another's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from pydantic import ValidationError
from scim2_models import Error, SCIMException

from blueprints.scim_api import admission
from blueprints.scim_settings import connector as service
from models import SsoConnection, utcnow
from tests import factories
from tests.scim_settings.conftest import ready  # noqa: F401 (the account ready for SCIM)

SCIM_JSON = "application/scim+json"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture(autouse=True)
def fresh_limits(request):
    """Empty limits for every test that has an app; pure tests (test_patch, test_query…:
    no `app` among their fixtures) start none for it."""
    if "app" in request.fixturenames:
        with request.getfixturevalue("app").test_request_context():
            admission.limits().reset()
    yield


def refusal(call) -> tuple[int, str | None] | None:
    """(status, scimType) the client receives when `call` fails, mapped as
    blueprints.scim_api.errors maps scim2-models' and pydantic's exceptions; None when
    it succeeds (for the pure tests, which call the modules without HTTP)."""
    try:
        call()
    except SCIMException as error:
        return error.status, error.scim_type or None
    except ValidationError as error:
        first = Error.from_validation_errors(error)[0]
        return int(first.status), first.scim_type
    return None


@pytest.fixture
def issued(session, ready, owner) -> service.Issued:  # noqa: F811
    """SCIM enabled on the `ready` account (Okta, 90 days): the connector and its token."""
    return service.enable(session, ready.id, owner, "okta", "90", utcnow())


@pytest.fixture
def other_issued(session) -> service.Issued:
    """Another account with SCIM on, and its own token."""
    other = factories.make_account(session, name="Other Inc")
    other_owner = factories.make_user(session, other, "owner@example.org", role="owner")
    factories.make_domain(session, other, "example.org", verified=True)
    session.add(
        SsoConnection(account_id=other.id, public_id="sso-other", protocol="oidc", enabled=True)
    )
    session.commit()
    return service.enable(session, other.id, other_owner, "entra", "365", utcnow())


@dataclass
class Scim:
    """Sends requests to a connector's URL with its bearer token, as an IdP does."""

    client: object
    issued: service.Issued

    @property
    def base(self) -> str:
        """The URL the SCIM page tells the owner to paste into the IdP."""
        return service.base_url(self.issued.connector)

    def __call__(
        self,
        method: str,
        path: str,
        token: str | None = ...,
        connector_id: str | None = None,
        headers: dict | None = None,
        **kwargs,
    ):
        """`path` is relative to the connector URL; `token=None` sends no Authorization,
        and `headers` may set its own."""
        base = self.base if connector_id is None else f"/scim/v2/{connector_id}"
        sent = {} if token is None else {"Authorization": f"Bearer {self.token(token)}"}
        sent |= headers or {}
        return self.client.open(base + path, method=method, headers=sent, csrf=False, **kwargs)

    def token(self, token) -> str:
        return self.issued.token if token is ... else token


@pytest.fixture
def scim(client, issued) -> Callable:
    return Scim(client, issued)


def provision(scim, user_name: str, **attributes) -> dict:
    """POST /Users as an IdP does (201 asserted); the created user."""
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name}
    response = scim("POST", "/Users", json=body | attributes)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def assert_scim_error(response, status: int) -> dict:
    """An RFC 7644 §3.12 error: the status, application/scim+json, the Error schema, the
    status as a string (as the RFC's examples show) and a detail."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:500]
    assert response.mimetype == SCIM_JSON
    assert "<html" not in text.lower()
    body = response.get_json(force=True)
    assert body["schemas"] == [ERROR_URN]
    assert body["status"] == str(status)
    assert body["detail"]
    return body


def assert_401(response) -> dict:
    body = assert_scim_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return body
