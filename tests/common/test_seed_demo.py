"""`flask --app app seed-demo`: idempotent demo data for a newcomer (SPEC "Stable names")."""

from __future__ import annotations

from sqlalchemy import func, select

from models import Account, Membership, User


def _seed(app, *options: str) -> dict[str, str]:
    result = app.test_cli_runner().invoke(args=["seed-demo", *options])
    assert result.exit_code == 0, result.output
    lines = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    return lines


def _count(session, stmt) -> int:
    return session.scalar(select(func.count()).select_from(stmt.subquery()))


def test_seed_demo_prints_an_owner_who_can_sign_in(app, client):
    printed = _seed(app)
    assert set(printed) >= {"OWNER_EMAIL", "OWNER_PASSPHRASE"}
    response = client.post(
        "/login",
        data={"email": printed["OWNER_EMAIL"], "passphrase": printed["OWNER_PASSPHRASE"]},
    )
    assert response.status_code == 302
    # An owner: the enterprise pages open.
    assert client.get("/enterprise/domains").status_code == 200


def test_seed_demo_twice_keeps_one_account_and_one_owner(app, session):
    first = _seed(app)
    second = _seed(app)
    assert first["OWNER_EMAIL"] == second["OWNER_EMAIL"]
    session.expire_all()
    assert _count(session, select(Account)) == 1
    assert _count(session, select(User).where(User.email_key == first["OWNER_EMAIL"])) == 1
    assert _count(session, select(Membership).where(Membership.role == "owner")) == 1


def test_seed_demo_again_gives_a_fresh_passphrase_that_works(app):
    first = _seed(app)
    second = _seed(app)
    assert first["OWNER_PASSPHRASE"] != second["OWNER_PASSPHRASE"]
    email = second["OWNER_EMAIL"]
    old = app.test_client().post(
        "/login", data={"email": email, "passphrase": first["OWNER_PASSPHRASE"]}
    )
    assert old.status_code == 401
    new = app.test_client().post(
        "/login", data={"email": email, "passphrase": second["OWNER_PASSPHRASE"]}
    )
    assert new.status_code == 302


def test_seed_demo_with_scim_prints_a_working_connector_and_a_fresh_token_each_run(app, session):
    from blueprints.scim_settings import connector as scim
    from models import Domain, SsoConnection, utcnow

    first = _seed(app, "--with-scim")
    assert first["SCIM_BASE_URL"].startswith("http://localhost/scim/v2/")
    public_id = first["SCIM_BASE_URL"].rsplit("/", 1)[1]
    session.expire_all()
    ok = scim.authenticate(session, public_id, f"Bearer {first['SCIM_TOKEN']}", utcnow())
    assert ok.reason is None
    account = session.scalar(select(Account))
    assert account.seat_limit == 1_000_000
    assert session.scalar(select(Domain.status).where(Domain.name == "acme.test")) == "verified"
    assert session.scalar(select(SsoConnection.enabled))

    second = _seed(app, "--with-scim")
    assert second["SCIM_BASE_URL"] == first["SCIM_BASE_URL"]  # the URL never changes
    assert second["SCIM_TOKEN"] != first["SCIM_TOKEN"]
    session.expire_all()
    fresh = scim.authenticate(session, public_id, f"Bearer {second['SCIM_TOKEN']}", utcnow())
    assert fresh.reason is None
    assert _count(session, select(Account)) == 1
