"""scim whole resource: the User as written in one document, members' display

Every SCIM user's attributes move into `membership.scim_resource` (JSON; JSONB on
PostgreSQL), filled from the columns that held a subset of them; the columns that only the
SCIM API read go. `display_name_key` (folded displayName, indexed) serves `displayName eq`,
and `team_member.display` keeps `members[].display` as the IdP wrote it.

Revision ID: b1c2d3e4f5a6
Revises: ae1f2b3c4d5e
Create Date: 2026-12-06 14:00:00

"""
import unicodedata

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = 'b1c2d3e4f5a6'
down_revision = 'ae1f2b3c4d5e'
branch_labels = None
depends_on = None

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
NAME_PARTS = [
    ("formatted", "formatted_name"),
    ("familyName", "family_name"),
    ("givenName", "given_name"),
    ("middleName", "middle_name"),
    ("honorificPrefix", "honorific_prefix"),
    ("honorificSuffix", "honorific_suffix"),
]
ENTERPRISE_PARTS = [
    ("employeeNumber", "employee_number"),
    ("costCenter", "cost_center"),
    ("organization", "organization"),
    ("division", "division"),
    ("department", "department"),
]
# Columns only the SCIM API read: their values are in the document now.
DROPPED = [
    "formatted_name",
    "middle_name",
    "honorific_prefix",
    "honorific_suffix",
    "title",
    "employee_number",
    "cost_center",
    "organization",
    "division",
    "department",
    "manager_id",
]
BATCH = 2000


def _fold(value):
    """NFC, lower case, NFC again: what the app compares caseExact=false strings in."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())


def _document(row, emails):
    """The resource the old columns held, as the API rendered it before this revision
    (so an IdP reading its users back sees what it saw yesterday)."""
    doc = {}
    if row.external_id is not None:
        doc["externalId"] = row.external_id
    doc["userName"] = row.user_name
    name = {key: row._mapping[col] for key, col in NAME_PARTS if row._mapping[col] is not None}
    if name:
        doc["name"] = name
    if row.display_name is not None:
        doc["displayName"] = row.display_name
    if row.title is not None:
        doc["title"] = row.title
    doc["active"] = bool(row.active)
    if emails:
        doc["emails"] = emails
    enterprise = {
        key: row._mapping[col] for key, col in ENTERPRISE_PARTS if row._mapping[col] is not None
    }
    if row.manager_id:
        enterprise["manager"] = {"value": row.manager_id}
    if enterprise:
        doc[ENTERPRISE] = enterprise
    return doc


def _membership_table(*extra):
    columns = [
        sa.column('id', sa.Integer),
        sa.column('source', sa.String),
        sa.column('active', sa.Boolean),
        sa.column('external_id', sa.String),
        sa.column('user_name', sa.String),
        sa.column('display_name', sa.String),
        sa.column('display_name_key', sa.String),
        sa.column('given_name', sa.String),
        sa.column('family_name', sa.String),
        sa.column('scim_resource', sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")),
    ]
    columns += [sa.column(name, sa.String) for name in extra]
    return sa.table('membership', *columns)


_EMAILS = sa.table(
    'member_email',
    sa.column('membership_id', sa.Integer),
    sa.column('position', sa.Integer),
    sa.column('value', sa.String),
    sa.column('type', sa.String),
    sa.column('primary', sa.Boolean),
    sa.column('display', sa.String),
)


def _emails_of(bind, ids):
    found = {}
    rows = bind.execute(
        sa.select(_EMAILS)
        .where(_EMAILS.c.membership_id.in_(ids))
        .order_by(_EMAILS.c.membership_id, _EMAILS.c.position)
    )
    for e in rows:
        entry = {"value": e.value, "type": e.type, "primary": True if e.primary else None}
        entry["display"] = e.display
        found.setdefault(e.membership_id, []).append(
            {key: value for key, value in entry.items() if value is not None}
        )
    return found


def upgrade():
    json_type = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scim_resource', json_type, nullable=True))
        batch_op.add_column(sa.Column('display_name_key', sa.String(length=512), nullable=True))
    with op.batch_alter_table('team_member', schema=None) as batch_op:
        batch_op.add_column(sa.Column('display', sa.String(length=512), nullable=True))

    bind = op.get_bind()
    membership = _membership_table(*DROPPED)
    last = 0
    while True:
        rows = bind.execute(
            sa.select(membership)
            .where(membership.c.id > last)
            .order_by(membership.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        scim_ids = [r.id for r in rows if r.source == "scim"]
        emails = _emails_of(bind, scim_ids) if scim_ids else {}
        updates = [
            {
                "row_id": r.id,
                "doc": _document(r, emails.get(r.id)) if r.source == "scim" else None,
                "key": _fold(r.display_name.strip()) if r.display_name else None,
            }
            for r in rows
        ]
        bind.execute(
            membership.update()
            .where(membership.c.id == sa.bindparam("row_id"))
            .values(scim_resource=sa.bindparam("doc"), display_name_key=sa.bindparam("key")),
            updates,
        )

    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.create_index(
            'ix_membership_account_display_name_key',
            ['account_id', 'display_name_key'],
            unique=False,
        )
        for name in DROPPED:
            batch_op.drop_column(name)


def downgrade():
    with op.batch_alter_table('membership', schema=None) as batch_op:
        for name in DROPPED:
            batch_op.add_column(sa.Column(name, sa.String(length=512), nullable=True))

    bind = op.get_bind()
    membership = _membership_table(*DROPPED)
    last = 0
    while True:
        rows = bind.execute(
            sa.select(membership.c.id, membership.c.scim_resource)
            .where(membership.c.id > last, membership.c.scim_resource.is_not(None))
            .order_by(membership.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        updates = []
        for row_id, doc in rows:
            doc = doc or {}
            name = doc.get("name") or {}
            enterprise = doc.get(ENTERPRISE) or {}
            values = {col: name.get(key) for key, col in NAME_PARTS if col not in ("given_name", "family_name")}
            values.update({col: enterprise.get(key) for key, col in ENTERPRISE_PARTS})
            values["title"] = doc.get("title")
            values["manager_id"] = (enterprise.get("manager") or {}).get("value")
            updates.append({"row_id": row_id, **{f"v_{k}": v for k, v in values.items()}})
        names = [col for col in DROPPED]
        bind.execute(
            membership.update()
            .where(membership.c.id == sa.bindparam("row_id"))
            .values({col: sa.bindparam(f"v_{col}") for col in names}),
            updates,
        )

    with op.batch_alter_table('team_member', schema=None) as batch_op:
        batch_op.drop_column('display')
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.drop_index('ix_membership_account_display_name_key')
        batch_op.drop_column('display_name_key')
        batch_op.drop_column('scim_resource')
