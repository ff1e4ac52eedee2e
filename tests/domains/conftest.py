"""Domains tests: the app looks TXT records up on a real DNS server on loopback.

`dns` is the zone that server answers from (emptied before each test); `silent_dns`
points the app at a server that never answers (the timeout case).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blueprints.domains import services
from tests import factories
from tests.domains.dns_server import SilentServer, Zone, ZoneServer


@pytest.fixture(scope="session")
def dns_server() -> Iterator[ZoneServer]:
    server = ZoneServer().start()
    yield server
    server.stop()


@pytest.fixture
def dns(dns_server) -> Iterator[Zone]:
    dns_server.zone.clear()
    yield dns_server.zone
    dns_server.zone.clear()


@pytest.fixture
def config_overrides(dns_server, dns) -> dict:
    return {"DNS_NAMESERVERS": [dns_server.address]}


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A name server that receives questions and never answers."""
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def silent_dns(app, silent_server) -> SilentServer:
    """Point the app at the name server that never answers."""
    app.config["DNS_NAMESERVERS"] = [silent_server.address]
    return silent_server


def publish(zone: Zone, domain, value: str | None = None) -> None:
    """Make `domain` exist and publish its verification record (or `value` instead)."""
    zone.add_domain(domain.name)
    zone.add_txt(services.record_name(domain), value or services.record_value(domain))


@pytest.fixture
def other_account(session):
    return factories.make_account(session, name="Other Corp")


@pytest.fixture
def other_owner(session, other_account):
    return factories.make_user(
        session, account=other_account, email="owner@other.example", role="owner"
    )
