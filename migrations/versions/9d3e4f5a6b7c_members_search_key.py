"""members search: one folded search string and a folded name per membership

Revision ID: 9d3e4f5a6b7c
Revises: 8c1d2e3f4a5b
Create Date: 2026-11-28 18:50:00

"""
import unicodedata

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9d3e4f5a6b7c'
down_revision = '8c1d2e3f4a5b'
branch_labels = None
depends_on = None


def _fold(value):
    return unicodedata.normalize("NFC", value).lower()


def upgrade():
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_key', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('sort_name', sa.String(length=512), nullable=True))
        batch_op.create_index(
            'ix_membership_account_sort_name', ['account_id', 'sort_name'], unique=False
        )
    # Existing members: what models.Membership.refresh_search computes on every write.
    bind = op.get_bind()
    membership = sa.table(
        'membership',
        sa.column('id', sa.Integer),
        sa.column('email', sa.String),
        sa.column('display_name', sa.String),
        sa.column('given_name', sa.String),
        sa.column('family_name', sa.String),
        sa.column('user_name', sa.String),
        sa.column('search_key', sa.Text),
        sa.column('sort_name', sa.String),
    )
    rows = bind.execute(
        sa.select(
            membership.c.id,
            membership.c.email,
            membership.c.display_name,
            membership.c.given_name,
            membership.c.family_name,
            membership.c.user_name,
        )
    ).all()
    updates = []
    for id_, email, display, given, family, user_name in rows:
        name = display or " ".join(p for p in (given, family) if p) or None
        parts = [p for p in (email, name, user_name) if p]
        updates.append(
            {
                "row_id": id_,
                "search_key": _fold("\n".join(parts)) if parts else None,
                "sort_name": _fold(name)[:512] if name else None,
            }
        )
    if updates:
        bind.execute(
            membership.update()
            .where(membership.c.id == sa.bindparam("row_id"))
            .values(search_key=sa.bindparam("search_key"), sort_name=sa.bindparam("sort_name")),
            updates,
        )


def downgrade():
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.drop_index('ix_membership_account_sort_name')
        batch_op.drop_column('sort_name')
        batch_op.drop_column('search_key')
