"""Sign-in, sign-out and roles (SPEC F1)."""

from tests import factories


def test_owner_signs_in_and_sees_enterprise_navigation(client, owner, login_as):
    response = login_as(owner)
    assert response.status_code == 302
    page = client.get("/").get_data(as_text=True)
    for label in ("Domains", "SSO", "SCIM", "Members"):
        assert f">{label}</a>" in page
    assert owner.email in page


def test_member_gets_403_on_enterprise_pages(client, session, account, login_as):
    member = factories.make_user(session, account=account, role="member")
    login_as(member)
    for path in (
        "/enterprise/domains",
        "/enterprise/sso",
        "/enterprise/scim",
        "/enterprise/members",
    ):
        assert client.get(path).status_code == 403, path
